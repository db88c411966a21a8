package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// largeFigures is the large point: the first deploy and the one-file change again, on a
// generated repository many times the size of the first, deployed by the same agent as an
// app of its own, each against git clone --depth 1 in the same run.
type largeFigures struct {
	Files        int           `json:"files"`
	Bytes        int64         `json:"bytes"`
	Dirs         int           `json:"dirs"`
	GenSecs      float64       `json:"generate_seconds"`
	FirstDeploy  deployFigures `json:"first_deploy"`
	SecondDeploy deployFigures `json:"second_deploy"`
	FirstClone   cloneResult   `json:"first_clone"`
	SecondClone  cloneResult   `json:"second_clone"`
}

// large generates tg's repository from spec into tg.bare, then deploys its first and second
// versions and clones each, writing the clones under work.
func (b *bench) large(ctx context.Context, work string, tg *target, spec repoSpec) (*largeFigures, error) {
	step("6. generating the large repository: %d files, %s …", spec.Files, human(spec.Bytes))
	t := time.Now()
	gen, err := generateBare(ctx, tg.bare, spec)
	if err != nil {
		return nil, err
	}
	tg.gen = gen
	l := &largeFigures{Files: gen.Files, Bytes: gen.Bytes, Dirs: gen.Dirs, GenSecs: time.Since(t).Seconds()}
	step("   generated in %s", secs(l.GenSecs))

	if l.FirstDeploy, err = b.deploy(ctx, tg, 0, 15*time.Minute); err != nil {
		return nil, fmt.Errorf("large: first deploy: %w", err)
	}
	step("   deployed in %s (layout %s), peak RSS %s", secs(l.FirstDeploy.Seconds), secs(l.FirstDeploy.LayoutSecs), human(l.FirstDeploy.PeakRSS))
	if l.FirstClone, err = timeClone(ctx, b.srv, tg.remote, branch, filepath.Join(work, "large-clone1")); err != nil {
		return nil, err
	}
	step("   git clone --depth 1 in %s, peak RSS %s", secs(l.FirstClone.Seconds), human(l.FirstClone.PeakRSS))
	if l.SecondDeploy, err = b.deploy(ctx, tg, 1, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("large: second deploy: %w", err)
	}
	step("   one file changed: deployed in %s, peak RSS %s", secs(l.SecondDeploy.Seconds), human(l.SecondDeploy.PeakRSS))
	if l.SecondClone, err = timeClone(ctx, b.srv, tg.remote, branch, filepath.Join(work, "large-clone2")); err != nil {
		return nil, err
	}
	step("   git clone --depth 1 in %s", secs(l.SecondClone.Seconds))
	return l, nil
}

// rows adds the large point's rows to the table of r.
func (l *largeFigures) rows(row func(...string), r *results) {
	row(fmt.Sprintf("6. %d files, %s: first version: time", l.Files, human(l.Bytes)), secs(l.FirstDeploy.Seconds), secs(l.FirstClone.Seconds))
	row("6.   first version: CPU time", secs(l.FirstDeploy.CPUSecs), secs(l.FirstClone.CPUSecs))
	row("6.   first version: peak RSS", human(l.FirstDeploy.PeakRSS), human(l.FirstClone.PeakRSS))
	row("6.   first version: load average at start", load(l.FirstDeploy.Load), load(l.FirstClone.Load))
	row("6.   one file changed: time", secs(l.SecondDeploy.Seconds), secs(l.SecondClone.Seconds))
	row("6.   one file changed: peak RSS", human(l.SecondDeploy.PeakRSS), human(l.SecondClone.PeakRSS))
	growth := func(d deployFigures, c cloneResult, d1 deployFigures, c1 cloneResult) (string, string) {
		return fmt.Sprintf("×%.1f / ×%.2f", ratio(d.Seconds, d1.Seconds), ratio(float64(d.PeakRSS), float64(d1.PeakRSS))),
			fmt.Sprintf("×%.1f / ×%.2f", ratio(c.Seconds, c1.Seconds), ratio(float64(c.PeakRSS), float64(c1.PeakRSS)))
	}
	agent, git := growth(l.FirstDeploy, l.FirstClone, r.FirstDeploy, r.FirstClone)
	row(fmt.Sprintf("6.   vs 1. (files ×%.1f, bytes ×%.1f): time / RSS",
		ratio(float64(l.Files), float64(r.Repo.Files)), ratio(float64(l.Bytes), float64(r.Repo.Bytes))), agent, git)
}

// explain says what the large point measured.
func (l *largeFigures) explain(w io.Writer, r *results) {
	fmt.Fprintf(w, `6. steps 1 and 2 again on a generated repository of %d files in %d directories, %s (made
   in %s), deployed by the same agent as an app of its own: first version (fetch %s, layout
   %s) and one file changed. The last row divides step 6's first version by step 1's: time
   that grows like the size and a peak RSS that does not.
`, l.Files, l.Dirs, human(l.Bytes), secs(l.GenSecs), secs(l.FirstDeploy.FetchSecs), secs(l.FirstDeploy.LayoutSecs))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
