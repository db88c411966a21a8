package agent

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/state"
	"github.com/pushdeploy/pushdeploy/ui"
)

// DefaultStateTimeout bounds the service manager reads of one load of the status page.
const DefaultStateTimeout = 2 * time.Second

// uiBackend is what the status page reads from the running agent.
type uiBackend struct{ a *Agent }

var _ ui.Backend = uiBackend{}

func (a *Agent) appNames() []string {
	names := make([]string, 0, len(a.apps))
	for name := range a.apps {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// local answers what the data directory holds, from the agent's open state.
func (a *Agent) local() *Local {
	return &Local{cfg: a.cfg, state: a.state, store: a.store, live: true, gc: a.GC}
}

// Apps reports each app's release, what is under way and its instances: one read of the
// units installed and one state read per instance from the service manager, and the last
// health answers the agent saw. No health check runs.
func (b uiBackend) Apps(ctx context.Context) ([]ui.App, error) {
	a := b.a
	sts, err := a.local().Status(ctx, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultStateTimeout)
	defer cancel()
	out := make([]ui.App, 0, len(sts))
	for _, st := range sts {
		app := ui.App{Name: st.App, Repo: st.Repo, Current: st.Current, Active: st.Active, Queued: st.Queued}
		if fi, err := os.Lstat(a.dirs.Current(st.App)); err == nil {
			app.Since = fi.ModTime().UTC() // the rename that made it current
		}
		app.Services, err = b.services(ctx, st.App)
		if err != nil {
			app.Error = "services: " + err.Error()
		}
		out = append(out, app)
	}
	return out, nil
}

// services lists the app's installed instances by service, with their state.
func (b uiBackend) services(ctx context.Context, app string) ([]ui.Service, error) {
	a := b.a
	in, err := a.loadInstalled(app)
	if err != nil || in == nil || len(in.Instances) == 0 {
		return nil, err
	}
	eng, err := a.engine(ctx, app)
	var out []ui.Service
	for _, unit := range sortedInstances(in.Instances) {
		service := serviceOf(app, unit)
		if len(out) == 0 || out[len(out)-1].Name != service {
			out = append(out, ui.Service{Name: service})
		}
		inst := ui.Instance{Unit: unit, Health: a.view.health.get(unit)}
		if err != nil {
			inst.Error = "service manager: " + err.Error()
		} else if st, serr := eng.Manager.State(ctx, unit); serr != nil {
			inst.Error = serr.Error()
		} else {
			inst.State, inst.SubState, inst.Since = st.ActiveState, st.SubState, st.Since
		}
		s := &out[len(out)-1]
		s.Instances = append(s.Instances, inst)
	}
	return out, nil
}

// serviceOf is the service of an instance unit pushdeploy-<app>-<service>@<n>.service.
func serviceOf(app, unit string) string {
	s := strings.TrimPrefix(unit, "pushdeploy-"+app+"-")
	s, _, _ = strings.Cut(s, "@")
	return s
}

// sortedInstances orders units by service, then instance number.
func sortedInstances(units []string) []string {
	out := append([]string(nil), units...)
	num := func(u string) int {
		_, n, _ := strings.Cut(u, "@")
		i, _ := strconv.Atoi(strings.TrimSuffix(n, ".service"))
		return i
	}
	sort.Slice(out, func(i, j int) bool {
		si, _, _ := strings.Cut(out[i], "@")
		sj, _, _ := strings.Cut(out[j], "@")
		if si != sj {
			return si < sj
		}
		return num(out[i]) < num(out[j])
	})
	return out
}

// History returns an app's deploys.
func (b uiBackend) History(ctx context.Context, app string, limit int) ([]state.Deploy, error) {
	return b.a.local().History(ctx, app, limit)
}

// Deploy finds a deploy by id, with its log so far.
func (b uiBackend) Deploy(_ context.Context, id string) (*state.Deploy, []byte, error) {
	d, err := b.a.findDeploy(id)
	if err != nil {
		return nil, nil, err
	}
	log, err := b.a.readLog(d.App, d.ID)
	return d, log, err
}

// Follow follows a deploy's log (Agent.follow).
func (b uiBackend) Follow(ctx context.Context, app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	return b.a.follow(ctx, app, id, from, emit)
}
