// Package journald sends the agent's log to the systemd journal natively, one journal
// entry per zerolog event: its level as the entry's PRIORITY (so `journalctl -u pushdeploy
// -p err` shows only errors), each field as a journal field of its own (PUSHDEPLOY_DEPLOY,
// PUSHDEPLOY_APP, … for `journalctl -F` and `-o verbose`), and a MESSAGE that reads like a
// console line. cmd/pushdeploy uses it when the agent's stderr is the journal's stream
// (JOURNAL_STREAM), as under systemd; it owns no other output.
package journald
