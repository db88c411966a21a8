// Package ui is the agent's status page: server-rendered HTML (html/template, assets
// embedded with go:embed, no external requests) that shows each app's current release,
// its services' instances with their state and last health answer, and the deploy history;
// and each deploy's page, with its steps and its log, following it live over server-sent
// events while it runs (a few lines of JavaScript: an EventSource). A deploy's page is
// /deploys/<id>, the log_url of the agent's GitHub deployment statuses.
//
// It knows nothing of the daemon: the agent passes a Backend (apps, history, a deploy's
// record, a log follower). Handler serves it, read-only; with a token, every request must
// carry it (Authorization: Bearer, or once as ?token=, which sets a cookie).
//
// A backend that is also a FleetBackend (the agent's, when etcd is configured) adds a fleet
// section to the index: every app of each environment with its summary line (converged, or
// how many hosts are where), its lock and halt, and every host with what it runs.
package ui
