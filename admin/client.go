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
	resp, err := c.do(ctx, c.hc, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("ask agent: %w", err)
	}
	return json.Unmarshal(body, out)
}

// do sends a request and returns the answer when it is 200 OK, else the error it carries.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrAgentDown
		}
		return nil, fmt.Errorf("ask agent: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w", e.Error, state.ErrNotFound)
	case http.StatusBadRequest:
		return nil, fmt.Errorf("%s: %w", e.Error, ErrInvalid)
	}
	return nil, fmt.Errorf("agent: %s", e.Error)
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

// DeployBranch asks the agent to queue a deploy of app's branch tip (see Backend).
func (c *Client) DeployBranch(ctx context.Context, app string, r DeployRequest) (*state.Deploy, error) {
	q := url.Values{"env": {r.Env}, "sha": {r.SHA}, "user": {r.User}}
	var out state.Deploy
	return &out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/deploy?"+q.Encode(), &out)
}

// Follow streams one deploy's log from the agent as it is written (see Backend); it waits
// as long as the deploy runs, bounded by ctx only.
func (c *Client) Follow(ctx context.Context, app, id string, from int64, emit func(line []byte, next int64) error) (*state.Deploy, error) {
	hc := *c.hc
	hc.Timeout = 0 // a deploy runs as long as it runs
	resp, err := c.do(ctx, &hc, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/deploys/"+url.PathEscape(id)+"/log?follow=1&from="+strconv.FormatInt(from, 10))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e LogEntry
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("follow log of %s: %w", id, err)
		}
		switch {
		case e.Error != "":
			return nil, fmt.Errorf("follow log of %s: agent: %s", id, e.Error)
		case e.Deploy != nil:
			return e.Deploy, nil
		}
		if err := emit(e.Line, e.Next); err != nil {
			return nil, err
		}
	}
}
