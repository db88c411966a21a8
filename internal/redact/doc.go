// Package redact masks known secret values in text the agent quotes but does not write:
// what an app's service prints to the journal, what its health endpoint answers and what
// a deploy script prints. An app that fails often says why with its configuration in the
// message ("cannot log in to postgres://app:PASSWORD@db/app"), and the agent carries that
// text into deploy records, logs, GitHub statuses and notifications, which leave the host.
// The agent knows the values (it rendered them into the app's environment file), so it
// masks them where such text enters: one Set per app, applied by the rollout engine and
// the script runner.
package redact
