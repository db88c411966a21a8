package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Remote is where an app's repository is fetched from. It always comes from the agent's
// configuration: a URL named in a webhook payload is never fetched.
type Remote struct {
	URL            string // ssh://, user@host:path, https://, http://, git://, file:// or a path
	SSHKeyFile     string // private deploy key, for ssh
	KnownHostsFile string // pinned host keys, for ssh; required with SSHKeyFile
	Token          string // sent as basic auth x-access-token:<token>, for https
	// Timeout bounds each exchange with the remote (listing its refs, a fetch, a push);
	// zero means DefaultTimeout. A server that accepts the connection and then stalls
	// would otherwise hold the app's deploys up for ever.
	Timeout time.Duration
}

// DefaultTimeout bounds one exchange with a remote when Remote.Timeout is zero: long
// enough for a first fetch of a large repository over a slow link.
const DefaultTimeout = 10 * time.Minute

// ErrTimeout marks an exchange with the remote that did not finish within its timeout.
var ErrTimeout = errors.New("timed out")

func (r Remote) timeout() time.Duration {
	if r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

// bound returns ctx limited to the remote's timeout, and a function that turns the error
// of an exchange under it into one that says the timeout ended it (rather than go-git's
// "context deadline exceeded"), when it did: the caller's own cancellation (a shutdown) is
// left as it is.
func (r Remote) bound(ctx context.Context) (context.Context, context.CancelFunc, func(error) error) {
	tctx, cancel := context.WithTimeout(ctx, r.timeout())
	explain := func(err error) error {
		if err == nil || ctx.Err() != nil || !errors.Is(tctx.Err(), context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("%w: no complete answer within %s (fetch_timeout)", ErrTimeout, r.timeout())
	}
	return tctx, cancel, explain
}

// Protocol reports the transport the URL uses: ssh, https, http, git or file.
func (r Remote) Protocol() (string, error) {
	ep, err := transport.NewEndpoint(r.URL)
	if err != nil {
		return "", fmt.Errorf("parse remote url: %w", err)
	}
	return ep.Protocol, nil
}

// auth builds the go-git credentials for the remote. SSH is refused without pinned host keys:
// trusting whatever key the server shows would let anyone on the path serve us code.
func (r Remote) auth() (transport.AuthMethod, error) {
	proto, err := r.Protocol()
	if err != nil {
		return nil, err
	}
	switch proto {
	case "ssh":
		if r.KnownHostsFile == "" {
			return nil, fmt.Errorf("ssh remote %s: known_hosts_file is required (host keys are pinned)", redact(r.URL))
		}
		user := "git"
		if ep, err := transport.NewEndpoint(r.URL); err == nil && ep.User != "" {
			user = ep.User
		}
		hostKeys, err := gitssh.NewKnownHostsCallback(r.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("read known hosts %s: %w", r.KnownHostsFile, err)
		}
		if r.SSHKeyFile == "" {
			return nil, fmt.Errorf("ssh remote %s: ssh_key_file is required", redact(r.URL))
		}
		if _, err := os.Stat(r.SSHKeyFile); err != nil {
			return nil, fmt.Errorf("read ssh key: %w", err)
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, r.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("load ssh key %s: %w", r.SSHKeyFile, err)
		}
		keys.HostKeyCallback = hostKeys
		return keys, nil
	case "https", "http":
		if r.Token == "" {
			return nil, nil
		}
		return &githttp.BasicAuth{Username: "x-access-token", Password: r.Token}, nil
	default:
		return nil, nil
	}
}

// redact removes any password from a URL so it can be logged or put in an error.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && at > slash) {
		return url
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + "@" + rest[at+1:]
}
