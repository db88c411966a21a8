// Package config owns the agent's configuration file (/etc/pushdeploy/agent.yaml): its
// YAML schema, the defaults of what it leaves out, and its validation. It is built in one
// order, defaults then file, and validated once; every error names its field
// (apps.web.remote: missing) and all of them are reported at once. Unknown fields are
// errors, so a misspelt setting is never silently ignored.
//
// The package reads the files the configuration names (secret_file, token_file,
// password_file) while validating, so a broken host is found at start and not at the first
// webhook; their content is kept in unexported fields and never appears in an error. It
// reads no flags and no environment: what the defaults depend on (hostname, uid, the
// session bus) comes in an Env from the CLI.
//
// The agent and the CLI both use it; it imports only leaf packages (release, restart,
// renv, internal/datadir).
package config
