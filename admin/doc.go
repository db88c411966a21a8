// Package admin owns the admin API, the agent's answers to the CLI: its endpoints (Handler,
// JSON over HTTP on a unix socket that Listen binds, 0600 in a 0700 directory), its wire
// types (AppStatus, ConfigStatus, the state.Deploy records) and its Client, which the CLI
// uses while the agent runs.
//
// It knows nothing of the daemon: the agent passes a Backend, which declares the one
// method per endpoint the API needs, and errors decide the answer's code (ErrNothingToDo is
// 409, ErrInvalid 400, state.ErrNotFound 404). A deploy's log is streamed as JSON lines
// (LogEntry) while it is written, ending with the final record. A Client reports
// ErrAgentDown when nothing answers on the socket; the CLI then reads the data directory
// itself.
package admin
