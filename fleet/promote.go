package fleet

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrNotPromotable is wrapped by Tested's errors: the environment does not show one commit
// that was deployed and found good.
var ErrNotPromotable = errors.New("nothing to promote")

// Tested returns the commit app runs, marked good, in env, and the hosts that run it:
//   - with sha "" every host of env that runs the app must be live, run the same commit,
//     marked good, with no deploy under way;
//   - with sha (a full id or a prefix) that commit must be current and good on at least
//     one live host, and no host's last deploy of it may have failed or been halted.
//
// Anything else is an error wrapping ErrNotPromotable that names the hosts in the way.
func (snap *Snapshot) Tested(app, env, sha string) (string, []string, error) {
	var hosts []*Host
	for _, h := range snap.Hosts {
		if h.Env == env && h.Apps[app] != nil {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return "", nil, fmt.Errorf("%w: no host runs %s in %s", ErrNotPromotable, app, env)
	}
	if sha != "" {
		return snap.testedNamed(app, env, sha, hosts)
	}
	var problems []string
	runs := map[string][]string{}
	for _, h := range hosts {
		a := h.Apps[app]
		switch {
		case !h.Alive:
			problems = append(problems, fmt.Sprintf("%s is unreachable (last ran %s): bring it back, or `pushdeploy fleet forget %s --env %s`", h.Host, orDash(short(a.SHA)), h.Host, env))
		case a.Deploy != nil:
			problems = append(problems, fmt.Sprintf("%s is deploying %s (%s)", h.Host, short(a.Deploy.SHA), a.Deploy.Status))
		case a.SHA == "":
			problems = append(problems, h.Host+" runs nothing yet")
		case a.Mark != "good":
			problems = append(problems, fmt.Sprintf("%s runs %s, marked %s", h.Host, short(a.SHA), orDash(a.Mark)))
		}
		runs[a.SHA] = append(runs[a.SHA], h.Host)
	}
	if len(runs) > 1 {
		var shas []string
		for s, hs := range runs {
			shas = append(shas, fmt.Sprintf("%s on %s", orDash(short(s)), strings.Join(hs, ", ")))
		}
		sort.Strings(shas)
		problems = append(problems, "the hosts run different commits: "+strings.Join(shas, "; ")+" (name one with --sha)")
	}
	if len(problems) > 0 {
		return "", nil, fmt.Errorf("%w: %s in %s is not on one good commit:\n  %s", ErrNotPromotable, app, env, strings.Join(problems, "\n  "))
	}
	sha = hosts[0].Apps[app].SHA
	return sha, runs[sha], nil
}

func (snap *Snapshot) testedNamed(app, env, prefix string, hosts []*Host) (string, []string, error) {
	var sha string
	var good, problems []string
	for _, h := range hosts {
		a := h.Apps[app]
		if h.Alive && a.SHA != "" && strings.HasPrefix(a.SHA, prefix) && a.Mark == "good" {
			if sha != "" && sha != a.SHA {
				return "", nil, fmt.Errorf("%w: %s is ambiguous in %s (%s, %s)", ErrNotPromotable, prefix, env, short(sha), short(a.SHA))
			}
			sha = a.SHA
			good = append(good, h.Host)
		}
		if l := a.Last; l != nil && strings.HasPrefix(l.SHA, prefix) && (l.Status == "failed" || l.Status == "halted") {
			problems = append(problems, fmt.Sprintf("%s's deploy of it %s", h.Host, l.Status))
		}
	}
	if sha == "" {
		return "", nil, fmt.Errorf("%w: no live host of %s runs %s marked good", ErrNotPromotable, env, prefix)
	}
	if len(problems) > 0 {
		return "", nil, fmt.Errorf("%w: %s in %s: %s", ErrNotPromotable, short(sha), env, strings.Join(problems, "; "))
	}
	return sha, good, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
