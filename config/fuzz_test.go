package config

import (
	"strings"
	"testing"
)

// FuzzParse: any agent.yaml is parsed and validated, or refused with an error, never a
// panic; a configuration that parses validates again unchanged (defaults are stable).
func FuzzParse(f *testing.F) {
	f.Add([]byte("environments: [production]\napps:\n  web:\n    repo: acme/web\n    remote: https://github.com/acme/web.git\n    secret_file: /etc/pushdeploy/web.secret\n"))
	f.Add([]byte("listen: \":5757\"\ndata_dir: /var/lib/pushdeploy\nenvironments: [staging, production]\nsystemd: {scope: user, settle: 2s}\n"))
	f.Add([]byte("apps:\n  web:\n    keep_releases: many\n"))
	f.Add([]byte("tls: {cert_file: cert.pem}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, Env{Hostname: "fuzz-host", UID: 0, ConfigHome: "/root/.config"})
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("a parsed configuration fails validation again: %v", err)
		}
	})
}
