// Package haproxy is a client for haproxy's admin socket: it takes one server of a backend
// out of rotation (drain, waiting for its sessions to end), puts it back (ready), and reads
// its state, so that the rollout engine restarts an instance only once no request is left
// on it.
//
// Each command is one connection to the socket; names are checked before they go into a
// command, so no value can add a second command. ServerName turns the agent's server
// template into a server name for one instance.
package haproxy
