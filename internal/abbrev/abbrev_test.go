package abbrev_test

import (
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/abbrev"
)

func TestSHA(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0123456789abcdef0123456789abcdef01234567", "0123456789ab"},
		{"0123456789ab", "0123456789ab"},
		{"abc", "abc"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := abbrev.SHA(tt.in); got != tt.want {
			t.Errorf("SHA(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"one line", "one line"},
		{"subject\n\nbody", "subject"},
		{"subject\r\nbody", "subject"},
		{"\n\n  indented \nnext", "indented"},
		{"", ""},
		{"  \n ", ""},
	}
	for _, tt := range tests {
		if got := abbrev.FirstLine(tt.in); got != tt.want {
			t.Errorf("FirstLine(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
