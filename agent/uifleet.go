package agent

import (
	"context"
	"sort"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
	"github.com/pushdeploy/pushdeploy/ui"
)

// uiBackend is what the status page reads: with a fleet (etcd configured), the fleet's
// hosts too.
func (a *Agent) uiBackend() ui.Backend {
	if a.fl.store != nil {
		return uiFleetBackend{uiBackend{a: a}}
	}
	return uiBackend{a: a}
}

// uiFleetBackend is uiBackend with the fleet's registry.
type uiFleetBackend struct{ uiBackend }

var _ ui.FleetBackend = uiFleetBackend{}

// Fleet reads the whole fleet in one etcd round trip, bounded by the state timeout, and
// sums up every app of every environment as `pushdeploy fleet status` does.
func (b uiFleetBackend) Fleet(ctx context.Context) ([]ui.FleetApp, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultStateTimeout)
	defer cancel()
	snap, err := b.a.fl.store.Read(ctx)
	if err != nil {
		return nil, err
	}
	var out []ui.FleetApp
	for _, ae := range snap.Apps() {
		sum := snap.Summarize(ae[0], ae[1])
		fa := ui.FleetApp{App: sum.App, Env: sum.Env, Summary: sum.String(), Converged: sum.Converged()}
		if sum.Lock != nil {
			fa.Lock = sum.Lock.String()
		}
		for _, h := range sum.Halts {
			fa.Halt = abbrev.SHA(h.SHA) + " failed on " + h.Host + ": " + h.Error
		}
		for _, l := range sum.Lines {
			fa.Hosts = append(fa.Hosts, ui.FleetHost{Host: l.Host, Alive: l.Alive, SHA: l.SHA, Mark: l.Mark, State: l.State, Since: l.Since})
		}
		out = append(out, fa)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Env < out[j].Env
	})
	return out, nil
}
