// Package abbrev shortens values for people to read: a commit id to the twelve digits
// every log line, table and GitHub status shows, a message or error to its first line.
// The agent, the CLI and the webhook parser all show these, and must show them alike.
package abbrev
