package hooks

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePostReceive(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    []PushInput
		wantErr string // "" means success
	}{
		{name: "one update", input: shaB + " " + shaA + " refs/heads/deploy-production\n",
			want: []PushInput{{Repo: "acme/web", Ref: "refs/heads/deploy-production", Before: shaB, After: shaA}}},
		{name: "several, crlf, blank line, no final newline, upper case",
			input: zeroSHA + " " + shaA + " refs/heads/new\r\n\n" + shaA + " " + zeroSHA + " refs/tags/v1\n" +
				strings.ToUpper(shaB) + " " + shaA + " refs/heads/main",
			want: []PushInput{
				{Repo: "acme/web", Ref: "refs/heads/new", Before: zeroSHA, After: shaA},
				{Repo: "acme/web", Ref: "refs/tags/v1", Before: shaA, After: zeroSHA},
				{Repo: "acme/web", Ref: "refs/heads/main", Before: shaB, After: shaA},
			}},
		{name: "empty input", input: "", want: nil},

		{name: "two fields", input: shaB + " " + shaA + "\n", wantErr: `line 1: want "<old-sha> <new-sha> <ref>"`},
		{name: "tab separated", input: shaB + "\t" + shaA + "\trefs/heads/main\n", wantErr: "line 1: want"},
		{name: "double space", input: shaB + "  " + shaA + " refs/heads/main\n", wantErr: "line 1: want"},
		{name: "bad old on line 2", input: shaB + " " + shaA + " refs/heads/a\nxyz " + shaA + " refs/heads/b\n",
			wantErr: `line 2: old: must be 40 hex digits, got "xyz"`},
		{name: "bad new", input: shaB + " " + shaA[:39] + " refs/heads/a\n", wantErr: "line 1: new: must be 40 hex digits"},
		{name: "short ref", input: shaB + " " + shaA + " main\n", wantErr: "line 1: ref: must be a full ref"},
		{name: "both zero", input: zeroSHA + " " + zeroSHA + " refs/heads/a\n", wantErr: "line 1: old and new are both all zeros"},
		{name: "line too long", input: shaB + " " + shaA + " refs/heads/a\n" + strings.Repeat("x", 70000) + "\n",
			wantErr: "line 2: bufio.Scanner: token too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePostReceive(strings.NewReader(tc.input), "acme/web")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %v, %v, want error containing %q", got, err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("got %v with the error, want nothing", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRepoFromGitDir(t *testing.T) {
	cases := []struct{ path, want string }{
		{"/srv/git/acme/web.git", "acme/web"},
		{"/srv/git/acme/web.git/", "acme/web"},
		{"/x/web", "x/web"},
		{"/src/acme/web/.git", "acme/web"},
		{"/srv/git/acme/./web.git", "acme/web"},
		{"acme/web.git", "acme/web"},
		{"/web.git", "web"},
		{"web.git", "web"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			if got := RepoFromGitDir(tc.path); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
