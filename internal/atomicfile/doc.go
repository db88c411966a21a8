// Package atomicfile writes files so that a reader sees either the old content or the new,
// never a torn one, even across a crash: every file pushdeploy writes goes through it.
package atomicfile
