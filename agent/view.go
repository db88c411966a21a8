package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushdeploy/pushdeploy/internal/logtail"
	"github.com/pushdeploy/pushdeploy/notify"
	"github.com/pushdeploy/pushdeploy/ui"
)

// DefaultNotifyDrain is how long a stopping agent keeps sending the notifications still
// queued.
const DefaultNotifyDrain = 10 * time.Second

// view is what the agent shows and tells operators, besides the admin API: the status page
// (package ui), the followers of deploy logs, the last health answers seen, and the
// notifications (package notify).
type view struct {
	logs     *logtail.Hub
	health   *verdicts
	outcomes *outcomes
	notifier *notify.Notifier // nil without targets

	ui   *http.Server // nil without a ui section
	uiLn net.Listener

	wg         sync.WaitGroup
	stopNotify context.CancelFunc
}

func newView(a *Agent, level zerolog.Level) *view {
	v := &view{logs: logtail.NewHub(), health: newVerdicts(), outcomes: newOutcomes()}
	if targets := notifyTargets(a.cfg); len(targets) > 0 {
		v.notifier = notify.New(newLogger(a.out, level).Str("component", "notify").Logger(), targets)
	}
	return v
}

// openView binds the status page's listener, when the configuration has a ui section.
func (a *Agent) openView() error {
	u := a.cfg.UI
	if u == nil {
		return nil
	}
	ln, err := net.Listen("tcp", u.Listen)
	if err != nil {
		return fmt.Errorf("ui: listen on %s: %w", u.Listen, err)
	}
	a.view.uiLn = ln
	ctx, cancel := context.WithCancel(context.Background())
	a.view.ui = &http.Server{
		Handler: ui.Handler(a.uiBackend(), ui.Options{Token: u.Token(),
			Log: a.component("ui").Logger()}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	a.view.ui.RegisterOnShutdown(cancel)
	return nil
}

// UIAddr is the status page's address, once Open has bound it ("" without a ui section).
func (a *Agent) UIAddr() string {
	if a.view.uiLn == nil {
		return ""
	}
	return a.view.uiLn.Addr().String()
}

// startView serves the status page and sends notifications until stopPages and
// stopNotifications.
func (a *Agent) startView() {
	v := a.view
	if v.ui != nil {
		v.wg.Go(func() {
			if err := v.ui.Serve(v.uiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error().Err(err).Str("listen", v.uiLn.Addr().String()).Msg("status page stopped")
			}
		})
		a.log.Info().Str("listen", v.uiLn.Addr().String()).Msg("status page serving")
	}
	if v.notifier != nil {
		ctx, cancel := context.WithCancel(context.Background())
		v.stopNotify = cancel
		v.wg.Go(func() { v.notifier.Run(ctx) })
	}
}

// stopPages ends every log follower (the status page's streams, the admin API's) and
// stops the status page.
func (a *Agent) stopPages(ctx context.Context) {
	a.view.logs.Close()
	if a.view.ui != nil {
		a.view.ui.Shutdown(ctx)
	}
}

// stopNotifications sends what is queued within DefaultNotifyDrain, then waits for the
// view's goroutines.
func (a *Agent) stopNotifications() {
	v := a.view
	if v.notifier != nil {
		v.notifier.Close()
		t := time.AfterFunc(DefaultNotifyDrain, v.stopNotify)
		defer t.Stop()
	}
	v.wg.Wait()
	if v.stopNotify != nil {
		v.stopNotify()
	}
}
