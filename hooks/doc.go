// Package hooks owns GitHub webhooks: authenticating and parsing deliveries, and
// producing GitHub-format signed push deliveries for plain git servers (post-receive).
//
// The agent receives deliveries with [Read], which authenticates the raw body as it streams in,
// before anything parses it (what unverified bodies hold and how fast they are read is bounded
// by a [Budget] the listener shares), and turns push payloads into a [Push] with [ParsePush]. A git server that is not
// GitHub runs a post-receive hook that turns its input into payloads with [ParsePostReceive]
// and [PushPayload] and delivers them with [Send], so the agent sees one format only.
//
// [GitHub] is the other side, through GitHub's REST API: [GitHub.Ensure] registers a
// repository's push webhook idempotently (with [GitHub.List], [GitHub.Remove] and
// [GitHub.Ping]), and [GitHub.CreateDeployment] and [GitHub.CreateDeploymentStatus] report
// deploys. Its errors wrap sentinels ([ErrNoAccess], [ErrRateLimited], …) and say what to do.
package hooks
