package main

import (
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	const bsd = "Redistribution and use in source and binary forms, with or without\nmodification, are permitted"
	tests := []struct {
		name, text string
		want       []string
	}{
		{"apache", "Apache License\n Version 2.0, January 2004\nTERMS AND CONDITIONS", []string{"Apache-2.0"}},
		{"mit", "MIT License\n\nPermission is hereby granted, free of charge, to any person", []string{"Expat"}},
		{"bsd-3", bsd + "\n* Neither the name of Google Inc. nor", []string{"BSD-3-Clause"}},
		{"bsd-2", bsd + "\n2. Redistributions in binary form", []string{"BSD-2-Clause"}},
		{"isc", "Permission to use, copy, modify, and/or distribute this software for any purpose", []string{"ISC"}},
		{"mpl", "Mozilla Public License Version 2.0\n==================================", []string{"MPL-2.0"}},
		{"two in one file", "MIT License\nPermission is hereby granted, free of charge\n\nLicensed under the Apache License, Version 2.0", []string{"Apache-2.0", "Expat"}},
		{"unknown", "All rights reserved.", []string{"other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.text); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// A paragraph quotes the copyright lines, includes a license's text unless Debian ships
// it in /usr/share/common-licenses, and refers to the one it ships.
func TestParagraph(t *testing.T) {
	lics := []license{
		{names: []string{"Expat"}, text: "Copyright (c) 2016 Jane Doe\n\nPermission is hereby granted.\n"},
		{names: []string{"Apache-2.0"}, text: "Apache License\nCopyright [yyyy] [name of copyright owner]\n"},
	}
	got := paragraph("example.com/m/*", "Go module example.com/m v1.0.0.", "the authors of example.com/m", lics)
	want := `
Files: example.com/m/*
Comment: Go module example.com/m v1.0.0.
Copyright: Copyright (c) 2016 Jane Doe
License: Expat and Apache-2.0
 Copyright (c) 2016 Jane Doe
 .
 Permission is hereby granted.
 .
 On Debian systems, the full text of the Apache-2.0 license is in
 /usr/share/common-licenses/Apache-2.0.
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := paragraph("x/*", "c", "the authors of x", lics[1:]); !strings.Contains(got, "\nCopyright: the authors of x\n") {
		t.Errorf("without a copyright line: got\n%s\nwant the fallback holder", got)
	}
}
