// Package state owns the agent's durable record: every deploy, restart, rollback and
// configuration change (a Deploy, with its Status and Kind) and the webhook deliveries
// already answered, in one bbolt file (datadir's StateDB).
//
// Every change is a transaction synced to disk before the agent answers or moves on, so a
// kill -9 loses nothing that was answered; concurrent deliveries share one transaction and
// one fsync (a group commit). The agent opens the file read-write and holds it; the CLI opens
// it read-only, and only while the agent is down. Deploy ids (IDs) sort in the order deploys
// were accepted.
package state
