// Command bench measures pushdeploy against `git clone --depth 1` on a generated repository:
// deploy time and bytes for a first and a one-file-changed version, disk used by ten
// releases, signed webhooks answered per second, and what bad webhooks cost: the agent's peak
// RSS while it reads 20 concurrent 30 MB badly signed bodies, and the latency of real pushes
// during a flood of bad requests. It drives the real bin/pushdeploy agent
// over loopback, against git http-backend, and removes every process and directory it made.
//
//	go run ./scripts/bench [-files 10000] [-mib 150] [-clients 8] [-requests 2000] [-keep]
package main
