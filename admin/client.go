package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// ErrAgentDown means nothing answers on the admin socket.
var ErrAgentDown = errors.New("agent is not running")

// Client talks to a running agent over its admin socket.
type Client struct {
	hc *http.Client
}

var _ Backend = (*Client)(nil)

// NewClient returns a client for the admin socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{
		Timeout: 5 * time.Minute,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return ErrAgentDown
		}
		return fmt.Errorf("ask agent: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("ask agent: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", e.Error, state.ErrNotFound)
		}
		return fmt.Errorf("agent: %s", e.Error)
	}
	return json.Unmarshal(body, out)
}

// Status asks the agent for every app's status, or one app's.
func (c *Client) Status(ctx context.Context, app string) ([]AppStatus, error) {
	var out []AppStatus
	return out, c.call(ctx, http.MethodGet, "/v1/status?app="+url.QueryEscape(app), &out)
}

// History asks the agent for an app's deploys.
func (c *Client) History(ctx context.Context, app string, limit int) ([]state.Deploy, error) {
	var out []state.Deploy
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/history?limit="+strconv.Itoa(limit), &out)
}

// Deploy asks the agent for one deploy and its log.
func (c *Client) Deploy(ctx context.Context, app, id string) (*state.Deploy, []byte, error) {
	var out deployWithLog
	err := c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/deploys/"+url.PathEscape(id), &out)
	return out.Deploy, []byte(out.Log), err
}

// GC asks the agent to apply an app's retention, between deploys.
func (c *Client) GC(ctx context.Context, app string) (release.GCResult, error) {
	var out release.GCResult
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/gc", &out)
}

// Restart asks the agent to queue a rolling restart of app's current release (of one
// service when service is set) and returns the queued record; Deploy follows it.
func (c *Client) Restart(ctx context.Context, app, service string) (*state.Deploy, error) {
	var out state.Deploy
	return &out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/restart?service="+url.QueryEscape(service), &out)
}

// Rollback asks the agent to queue a rollback of app to sha (a prefix), or to the previous
// good release when sha is empty, and returns the queued record.
func (c *Client) Rollback(ctx context.Context, app, sha string) (*state.Deploy, error) {
	var out state.Deploy
	return &out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/rollback?sha="+url.QueryEscape(sha), &out)
}
