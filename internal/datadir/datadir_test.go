package datadir_test

import (
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

// TestLayout pins every path to the layout the README's "On disk" section documents: a
// change here is a change to what operators find on their hosts.
func TestLayout(t *testing.T) {
	l := datadir.Layout{Root: "/var/lib/pushdeploy"}
	const sha = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name, got, want string
	}{
		{"StateDB", l.StateDB(), "/var/lib/pushdeploy/state.db"},
		{"AdminSocket", l.AdminSocket(), "/var/lib/pushdeploy/run/admin.sock"},
		{"Objects", l.Objects(), "/var/lib/pushdeploy/objects"},
		{"Object", l.Object(sha, false), "/var/lib/pushdeploy/objects/01/23456789abcdef0123456789abcdef01234567"},
		{"Object exec", l.Object(sha, true), "/var/lib/pushdeploy/objects/01/23456789abcdef0123456789abcdef01234567.x"},
		{"ObjectsLock", l.ObjectsLock(), "/var/lib/pushdeploy/objects/.lock"},
		{"ObjectsTmp", l.ObjectsTmp(), "/var/lib/pushdeploy/objects/tmp"},
		{"App", l.App("web"), "/var/lib/pushdeploy/apps/web"},
		{"Cache", l.Cache("web"), "/var/lib/pushdeploy/apps/web/cache.git"},
		{"Releases", l.Releases("web"), "/var/lib/pushdeploy/apps/web/releases"},
		{"Release", l.Release("web", sha), "/var/lib/pushdeploy/apps/web/releases/" + sha},
		{"MetaDir", l.MetaDir("web"), "/var/lib/pushdeploy/apps/web/meta"},
		{"Meta", l.Meta("web", sha), "/var/lib/pushdeploy/apps/web/meta/" + sha + ".json"},
		{"Current", l.Current("web"), "/var/lib/pushdeploy/apps/web/current"},
		{"CurrentTarget", l.CurrentTarget(sha), "releases/" + sha},
		{"DeployLog", l.DeployLog("web", "20250101-120000.000-abcdef"), "/var/lib/pushdeploy/apps/web/deploys/20250101-120000.000-abcdef.log"},
		{"Units", l.Units("web"), "/var/lib/pushdeploy/apps/web/units.json"},
		{"Config", l.Config("web"), "/var/lib/pushdeploy/apps/web/config"},
		{"EnvFile", l.EnvFile("web"), "/var/lib/pushdeploy/apps/web/config/env"},
		{"GoodConfig", l.GoodConfig("web"), "/var/lib/pushdeploy/apps/web/config/good.json"},
		{"BadConfig", l.BadConfig("web"), "/var/lib/pushdeploy/apps/web/config/bad.json"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}
