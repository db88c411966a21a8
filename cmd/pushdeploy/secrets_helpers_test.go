package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// secretSet is every secret value a test gave the agent, in every form it could plausibly
// leak in: as is, hex (both cases), base64 (standard, URL, unpadded), URL-escaped, and
// JSON- or Go-quoted. A form maps to the secret's name and the form's.
type secretSet struct {
	forms map[string]string
	kinds map[string][]string // secret name -> its forms
}

func newSecretSet() *secretSet {
	return &secretSet{forms: map[string]string{}, kinds: map[string][]string{}}
}

// add records the secret value under name, with its encodings.
func (s *secretSet) add(name, value string) {
	b := []byte(value)
	forms := map[string]string{
		"as is":         value,
		"hex":           hex.EncodeToString(b),
		"HEX":           strings.ToUpper(hex.EncodeToString(b)),
		"base64":        strings.TrimRight(base64.StdEncoding.EncodeToString(b), "="),
		"base64url":     strings.TrimRight(base64.URLEncoding.EncodeToString(b), "="),
		"query-escaped": url.QueryEscape(value),
		"path-escaped":  url.PathEscape(value),
		"quoted":        strings.Trim(strconv.Quote(value), `"`),
	}
	for form, v := range forms {
		if len(v) < 8 {
			continue // too short to mean anything
		}
		s.forms[v] = name + " (" + form + ")"
		s.kinds[name] = append(s.kinds[name], v)
	}
}

// addForm records one more form of the secret name, e.g. a basic-auth header's base64.
func (s *secretSet) addForm(name, form, value string) {
	s.forms[value] = name + " (" + form + ")"
	s.kinds[name] = append(s.kinds[name], value)
}

// without is the set less the secrets named: what a place that holds those by design
// (the environment file holds the app's configuration) must still not hold.
func (s *secretSet) without(names ...string) *secretSet {
	out := newSecretSet()
	for v, what := range s.forms {
		name, _, _ := strings.Cut(what, " (")
		if !slices.Contains(names, name) {
			out.forms[v] = what
			out.kinds[name] = append(out.kinds[name], v)
		}
	}
	return out
}

// find returns what of the set data holds, each with the bytes around it.
func (s *secretSet) find(data []byte) []string {
	var found []string
	for v, what := range s.forms {
		if i := bytes.Index(data, []byte(v)); i >= 0 {
			lo, hi := max(0, i-80), min(len(data), i+len(v)+40)
			found = append(found, what+" in …"+strconv.Quote(string(data[lo:hi]))+"…")
		}
	}
	sort.Strings(found)
	return found
}

// scan fails the test for every secret data holds; where says what data is.
func (s *secretSet) scan(t *testing.T, where string, data []byte) {
	t.Helper()
	for _, f := range s.find(data) {
		t.Errorf("%s: leaks %s", where, f)
	}
}

// scanned counts the places a test scanned, so that it can say how much it looked at.
type scanned struct {
	mu     sync.Mutex
	places []string
	bytes  int
}

func (c *scanned) add(where string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.places = append(c.places, where)
	c.bytes += n
}

// recorder is an HTTP server standing in for GitHub's API or a notification target: it
// keeps every request (method, path, headers, body) and answers with answer.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	answer func(w http.ResponseWriter, r *http.Request, body []byte)
}

type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), body})
	rc.mu.Unlock()
	rc.answer(w, r, body)
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// unixClient is an HTTP client that dials the unix socket sock, whatever the URL's host.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// fetch GETs url with c and returns the answer as the wire would show it: status line,
// headers and body.
func fetch(t *testing.T, c *http.Client, url string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b bytes.Buffer
	b.WriteString(resp.Status + "\n")
	resp.Header.Write(&b)
	b.WriteString("\n")
	b.Write(body)
	return resp.StatusCode, b.Bytes()
}

// filesUnder lists the regular files and sockets under dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Type()&fs.ModeSymlink == 0 {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// readOrEmpty is the file's content, or nothing for a socket.
func readOrEmpty(t *testing.T, path string) []byte {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkModes walks the data directory and fails the test for every path whose mode is not
// the one README's "On disk" documents: directories on the way to a release 0711, a
// release and its directories 0755, its files 0444 or 0555 (links to the store's objects),
// every other directory 0700 and every other file (state, records, logs, environment
// files, the admin socket) 0600. Inside cache.git only the directory itself is checked: its
// contents are go-git's. It returns how many paths it checked.
func checkModes(t *testing.T, data string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		parts := strings.Split(rel, "/")
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		inRelease := len(parts) >= 4 && parts[0] == "apps" && parts[2] == "releases"
		isObject := len(parts) == 3 && parts[0] == "objects" && parts[1] != "tmp"
		var want []fs.FileMode
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil // current, and a release's symlinks
		case fi.IsDir() && (rel == "." || rel == "apps" || (len(parts) == 2 && parts[0] == "apps") ||
			(len(parts) == 3 && parts[0] == "apps" && parts[2] == "releases")):
			want = []fs.FileMode{0o711}
		case fi.IsDir() && inRelease:
			want = []fs.FileMode{0o755}
		case fi.IsDir():
			want = []fs.FileMode{0o700}
		case inRelease || isObject:
			want = []fs.FileMode{0o444, 0o555}
		default:
			want = []fs.FileMode{0o600}
		}
		n++
		if got := fi.Mode().Perm(); !slices.Contains(want, got) {
			t.Errorf("data dir: %s is %04o, want %04o", rel, got, want)
		}
		if fi.IsDir() && len(parts) == 3 && parts[2] == "cache.git" {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", data, err)
	}
	return n
}

// waitConfig waits until the app has n final configuration-change records, oldest first.
func waitConfig(t *testing.T, e *e2e, n int) []deployJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var hist []struct {
			deployJSON
			Kind string
		}
		json.Unmarshal([]byte(e.cli("history", "web", "--json")), &hist)
		var got []deployJSON
		for i := len(hist) - 1; i >= 0; i-- {
			if s := hist[i].Status; hist[i].Kind == "config" && (s == "succeeded" || s == "failed") {
				got = append(got, hist[i].deployJSON)
			}
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d configuration changes finished; agent log:\n%s", n, e.agentLog())
	return nil
}

// failFirst answers the first request 502, as a proxy in front of a restarting server
// would, and the others with answer.
func failFirst(answer func(http.ResponseWriter, *http.Request, []byte)) func(http.ResponseWriter, *http.Request, []byte) {
	var once sync.Once
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		failed := false
		once.Do(func() { failed = true })
		if failed {
			http.Error(w, "<html>502 Bad Gateway</html>", http.StatusBadGateway)
			return
		}
		answer(w, r, body)
	}
}

// githubAnswer answers as GitHub's deployments API does.
func githubAnswer(w http.ResponseWriter, r *http.Request, _ []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	if strings.HasSuffix(r.URL.Path, "/deployments") {
		fmt.Fprint(w, `{"id": 7}`)
		return
	}
	fmt.Fprint(w, `{"id": 1}`)
}

func headerBytes(h http.Header) []byte {
	var b bytes.Buffer
	h.Write(&b)
	return b.Bytes()
}

// writeAuditCert writes a self-signed certificate for 127.0.0.1 and its key, and returns
// a pool trusting it and the forms of the private key a leak could take: the key's scalar
// in hex and base64, and the first line of its PEM body.
func writeAuditCert(t *testing.T, certFile, keyFile string) (*x509.CertPool, map[string]string) {
	t.Helper()
	_, key := testenv.WriteServerCert(t, certFile, keyFile, 1)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	d, err := key.Bytes() // the scalar, fixed size
	if err != nil {
		t.Fatal(err)
	}
	return pool, map[string]string{
		"scalar hex":     hex.EncodeToString(d),
		"scalar base64":  strings.TrimRight(base64.StdEncoding.EncodeToString(d), "="),
		"PEM first line": strings.Split(string(keyPEM), "\n")[1],
	}
}

// freeTCPPort is a port free on 127.0.0.1 a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
