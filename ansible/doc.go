// Package ansible holds the ansible role that provisions a pushdeploy host
// (roles/pushdeploy), its playbook (site.yml) and an example inventory
// (inventory.example.yml), and, in its tests, their proof: the playbook provisions two
// real booted Debian 12 hosts of internal/testenv's lab through ansible's
// community.docker.nsenter connection, twice (the second run changes nothing), a git
// push then deploys on both, a GitHub API stand-in sees one webhook per host, wrong
// variables fail the play naming them, and ansible-lint's production profile passes.
// There is no Go code to import here.
package ansible
