package release_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/release"
)

func TestCache_Fetch_HTTPSToken(t *testing.T) {
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", true)
	repo := testenv.NewRepo(t)
	repo.Write("README", "hi\n", 0o644)
	sha := repo.Commit("one")
	repo.Push(bare, "main:"+branch)
	url := testenv.GitHTTPToken(t, root, "ghs_token123") + "acme/web.git"

	tests := []struct {
		name    string
		token   string
		wantErr bool
	}{
		{"right token", "ghs_token123", false},
		{"wrong token", "ghs_wrong", true},
		{"no token", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := release.OpenCache(filepath.Join(t.TempDir(), "cache.git"), release.Remote{URL: url, Token: tt.token})
			if err != nil {
				t.Fatal(err)
			}
			tip, err := c.Tip(t.Context(), branch)
			if tt.wantErr {
				if err == nil {
					t.Fatal("got no error, want an authentication error")
				}
				if tt.token != "" && strings.Contains(err.Error(), tt.token) {
					t.Errorf("error reveals the token: %v", err)
				}
				return
			}
			if err != nil || tip != sha {
				t.Fatalf("tip: got %s, %v; want %s", tip, err, sha)
			}
			if _, err := c.Fetch(t.Context(), sha, branch); err != nil {
				t.Fatalf("fetch: %v", err)
			}
		})
	}
}

func TestRemote_ssh(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("not a key"), 0o600)
	tests := []struct {
		name   string
		remote release.Remote
		want   string
	}{
		{"no known hosts", release.Remote{URL: "git@github.com:acme/web.git", SSHKeyFile: key}, "known_hosts_file is required"},
		{"no key", release.Remote{URL: "ssh://git@github.com/acme/web.git", KnownHostsFile: filepath.Join(dir, "kh")}, "known hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := release.OpenCache(filepath.Join(t.TempDir(), "cache.git"), tt.remote)
			if err == nil {
				_, err = c.Tip(t.Context(), branch)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if errors.Is(err, release.ErrBranchNotFound) {
				t.Fatal("an ssh setup error was taken for a missing branch")
			}
		})
	}
}

func TestCache_Fetch_SSHDeployKey(t *testing.T) {
	sshd := testenv.StartSSH(t)
	root := testenv.NewRoot(t)
	bare := testenv.NewBare(t, root, "acme/web.git", true)
	repo := testenv.NewRepo(t)
	repo.Write("README", "over ssh\n", 0o644)
	sha := repo.Commit("one")
	repo.Push(bare, "main:"+branch)

	tests := []struct {
		name       string
		knownHosts string
		wantErr    string
	}{
		{"pinned host key", sshd.KnownHostsFile, ""},
		{"host key not the pinned one", sshd.OtherHostsFile, "key mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remote := release.Remote{URL: sshd.URL(bare.Path()), SSHKeyFile: sshd.KeyFile, KnownHostsFile: tt.knownHosts}
			c, err := release.OpenCache(filepath.Join(t.TempDir(), "cache.git"), remote)
			if err != nil {
				t.Fatal(err)
			}
			tip, err := c.Tip(t.Context(), branch)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || tip != sha {
				t.Fatalf("tip: got %s, %v; want %s", tip, err, sha)
			}
			res, err := c.Fetch(t.Context(), sha, branch)
			if err != nil || res.Fallback {
				t.Fatalf("fetch: got %+v, %v; want a fetch by sha", res, err)
			}
		})
	}
}
