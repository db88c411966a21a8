package abbrev

import "strings"

// SHALen is how many digits of a commit id are shown: enough to be unique in practice,
// short enough for a table column.
const SHALen = 12

// SHA is sha's first SHALen characters, or sha itself when it is shorter (or empty).
func SHA(sha string) string {
	if len(sha) > SHALen {
		return sha[:SHALen]
	}
	return sha
}

// FirstLine is s's first line that is not blank, without the white space around it (a
// "\r\n" line end included): a commit message's subject, an error's headline.
func FirstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}
