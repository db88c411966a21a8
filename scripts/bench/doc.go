// Command bench measures pushdeploy against `git clone --depth 1` on a generated repository:
// deploy time and bytes for a first and a one-file-changed version, disk used by ten
// releases, and signed webhooks answered per second. It drives the real bin/pushdeploy agent
// over loopback, against git http-backend, and removes every process and directory it made.
//
//	go run ./scripts/bench [-files 10000] [-mib 150] [-clients 8] [-requests 2000] [-keep]
package main
