// Package packaging holds the Debian package of pushdeploy: build-deb.sh (what `make deb`
// runs), the agent's unit pushdeploy.service, the example /etc/pushdeploy/agent.yaml, the
// man page, and debian/ (maintainer scripts, README.Debian, the copyright header, lintian
// overrides). It has no Go code: its tests build the package and install, upgrade,
// remove and purge it on booted Debian 12 lab hosts (internal/testenv), where the packaged
// agent deploys a system-scope service from inside its sandbox.
package packaging
