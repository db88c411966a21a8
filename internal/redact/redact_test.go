package redact

import "testing"

func TestSet_String(t *testing.T) {
	var s Set
	s.Learn("s3cr3t-pw", "pa ss/word&", "pw", "s3cr3t-pw-longer")
	tests := []struct{ in, want string }{
		{"fatal: cannot log in to postgres://app:s3cr3t-pw@db/app", "fatal: cannot log in to postgres://app:<redacted>@db/app"},
		{"token s3cr3t-pw-longer and s3cr3t-pw", "token <redacted> and <redacted>"},
		{"query pa+ss%2Fword%26 path pa%20ss%2Fword&", "query <redacted> path <redacted>"},
		{"as is: pa ss/word&.", "as is: <redacted>."},
		{"pw is too short to mask: pw", "pw is too short to mask: pw"},
		{"nothing here", "nothing here"},
	}
	for _, tt := range tests {
		if got := s.String(tt.in); got != tt.want {
			t.Errorf("String(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
	var none *Set
	if got := none.String("s3cr3t-pw"); got != "s3cr3t-pw" {
		t.Errorf("nil Set: got %q, want the text as is", got)
	}
}
