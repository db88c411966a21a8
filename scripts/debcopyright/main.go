package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

func main() {
	header := flag.String("header", "", "file with the copyright file's header and the package's own paragraph")
	flag.Parse()
	if *header == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: debcopyright -header FILE BINARY")
		os.Exit(2)
	}
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	if err := run(os.Stdout, *header, flag.Arg(0), goCmd); err != nil {
		fmt.Fprintln(os.Stderr, "debcopyright:", err)
		os.Exit(1)
	}
}

// run writes the copyright file of binary to w.
func run(w io.Writer, header, binary, goCmd string) error {
	head, err := os.ReadFile(header)
	if err != nil {
		return err
	}
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("read build information of %s: %w", binary, err)
	}
	var b bytes.Buffer
	b.Write(bytes.TrimRight(head, "\n"))
	b.WriteString("\n")

	goroot, err := exec.Command(goCmd, "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	std, err := readLicenses(strings.TrimSpace(string(goroot)))
	if err != nil {
		return fmt.Errorf("go standard library: %w", err)
	}
	b.WriteString(paragraph("go/*", "The Go runtime and standard library, "+info.GoVersion+".", "The Go Authors", std))

	var mods []string
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		mods = append(mods, d.Path+"@"+d.Version)
	}
	dirs, err := moduleDirs(goCmd, mods)
	if err != nil {
		return err
	}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		dir := dirs[d.Path+"@"+d.Version]
		if dir == "" {
			return fmt.Errorf("module %s@%s: not in the module cache", d.Path, d.Version)
		}
		lics, err := readLicenses(dir)
		if err != nil {
			return fmt.Errorf("module %s@%s: %w", d.Path, d.Version, err)
		}
		comment := fmt.Sprintf("Go module %s %s.", d.Path, d.Version)
		b.WriteString(paragraph(d.Path+"/*", comment, "the authors of "+d.Path, lics))
	}
	_, err = w.Write(b.Bytes())
	return err
}

// moduleDirs returns the module cache directory of each path@version.
func moduleDirs(goCmd string, mods []string) (map[string]string, error) {
	dirs := map[string]string{}
	if len(mods) == 0 {
		return dirs, nil
	}
	cmd := exec.Command(goCmd, append([]string{"mod", "download", "-json"}, mods...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return dirs, nil
		} else if err != nil {
			return nil, fmt.Errorf("go mod download: %w", err)
		}
		if m.Error != "" {
			return nil, fmt.Errorf("go mod download %s@%s: %s", m.Path, m.Version, m.Error)
		}
		dirs[m.Path+"@"+m.Version] = m.Dir
	}
}

// license is one license file: the licenses its text grants, by Debian short name.
type license struct {
	names []string
	text  string
}

var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying)([.-].*)?$`)

// readLicenses reads and classifies the license files at the top of dir. A file it does
// not recognize is left out when another one is recognized (COPYING.md that only says
// which file is under which license).
func readLicenses(dir string) ([]license, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var known, other []license
	for _, e := range ents {
		if e.IsDir() || !licenseFile.MatchString(e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		l := license{names: classify(string(data)), text: string(data)}
		if slices.Equal(l.names, []string{"other"}) {
			other = append(other, l)
		} else {
			known = append(known, l)
		}
	}
	if len(known) > 0 {
		return known, nil
	}
	if len(other) > 0 {
		return other, nil
	}
	return nil, fmt.Errorf("no license file in %s", dir)
}

// classify names the licenses a license file's text grants.
func classify(text string) []string {
	t := strings.Join(strings.Fields(text), " ")
	var names []string
	has := func(s ...string) bool {
		for _, x := range s {
			if !strings.Contains(t, x) {
				return false
			}
		}
		return true
	}
	if has("Apache License", "Version 2.0") {
		names = append(names, "Apache-2.0")
	}
	if has("Mozilla Public License", "2.0") {
		names = append(names, "MPL-2.0")
	}
	if has("Redistribution and use in source and binary forms") {
		if has("Neither the name") || has("names of its contributors") || has("name of the copyright holder") {
			names = append(names, "BSD-3-Clause")
		} else {
			names = append(names, "BSD-2-Clause")
		}
	}
	if has("Permission is hereby granted, free of charge") {
		names = append(names, "Expat")
	}
	if has("Permission to use, copy, modify, and", "distribute this software for any purpose") {
		names = append(names, "ISC")
	}
	if len(names) == 0 {
		names = []string{"other"}
	}
	return names
}

// commonLicenses are the licenses whose text Debian ships in /usr/share/common-licenses:
// a copyright file refers to it rather than repeat it.
var commonLicenses = map[string]bool{"Apache-2.0": true, "MPL-2.0": true}

var copyrightLine = regexp.MustCompile(`(?i)^\s*(copyright\s*(\(c\)|©)?\s*\d.*|\(c\)\s*\d.*)$`)

// paragraph is a Files paragraph for one component with its license files: the
// copyright lines of its texts (or fallback), the licenses' short names, and the texts
// of those not in /usr/share/common-licenses.
func paragraph(files, comment, fallback string, lics []license) string {
	var names, holders []string
	var texts []string
	for _, l := range lics {
		for _, n := range l.names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		for _, line := range strings.Split(l.text, "\n") {
			if h := strings.TrimSpace(line); copyrightLine.MatchString(line) && !slices.Contains(holders, h) {
				holders = append(holders, h)
			}
		}
		common := true
		for _, n := range l.names {
			common = common && commonLicenses[n]
		}
		if !common {
			texts = append(texts, l.text)
		}
	}
	if len(holders) == 0 {
		holders = []string{fallback}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nFiles: %s\nComment: %s\nCopyright: %s\nLicense: %s\n", files, comment,
		strings.Join(holders, "\n "), strings.Join(names, " and "))
	for i, text := range texts {
		if i > 0 {
			b.WriteString(" .\n")
		}
		b.WriteString(fieldText(text))
	}
	var refs []string
	for _, n := range names {
		if commonLicenses[n] {
			refs = append(refs, "/usr/share/common-licenses/"+n)
		}
	}
	if len(refs) > 0 {
		if len(texts) > 0 {
			b.WriteString(" .\n")
		}
		fmt.Fprintf(&b, " On Debian systems, the full text of the %s license is in\n %s.\n",
			strings.Join(commonNames(names), " and "), strings.Join(refs, " and "))
	}
	return b.String()
}

func commonNames(names []string) []string {
	var out []string
	for _, n := range names {
		if commonLicenses[n] {
			out = append(out, n)
		}
	}
	return out
}

// fieldText formats text as the continuation lines of a field: each line indented by a
// space, an empty line as " .".
func fieldText(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.Trim(text, "\n"), "\n") {
		line = strings.TrimRight(line, " \t\r")
		if line == "" {
			b.WriteString(" .\n")
			continue
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}
