package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pushdeploy/pushdeploy/renv"
)

// envPair is one KEY=VALUE argument of set.
type envPair struct {
	key   string // as given
	path  []string
	value json.RawMessage
}

// parsePairs parses KEY=VALUE arguments, each split at its first '='; an error names the
// argument, and any error means nothing is written.
func parsePairs(args []string, asString bool) ([]envPair, error) {
	pairs := make([]envPair, 0, len(args))
	check := renv.Leaves{}
	for _, arg := range args {
		key, value, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want KEY=VALUE", arg)
		}
		if key == "" {
			return nil, fmt.Errorf("%q: empty key, want KEY=VALUE", arg)
		}
		path, err := renv.ParseKey(key)
		if err != nil {
			return nil, err // it quotes the key
		}
		p := envPair{key: key, path: path, value: renv.ParseValue(value, asString)}
		if err := check.Set(p.path, p.value); err != nil {
			return nil, fmt.Errorf("%q: %w", arg, err)
		}
		pairs = append(pairs, p)
	}
	if err := check.CheckNotMasked(); err != nil {
		return nil, fmt.Errorf("refuse to set: %w", err)
	}
	return pairs, nil
}

func newEnvSetCmd(f *envFlags) *cobra.Command {
	var asString bool
	cmd := &cobra.Command{
		Use:   "set APP[/ENV] KEY=VALUE...",
		Short: "Set keys of a document, all in one transaction",
		Long: "set splits each argument at its first '=' (url=a=b sets url to \"a=b\"). A dotted KEY " +
			"nests (db.host=x sets host in db; \\. is a literal dot). A VALUE that is JSON (42, 1.5, " +
			"true, null, \"x\", [...], {...}) is stored as that JSON, anything else as a string; " +
			"an object replaces whatever was at KEY (db={\"host\":\"x\"} leaves no db.port); " +
			"--string stores every VALUE as a string. All keys are written in one transaction, " +
			"and nothing when a value is unchanged.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			pairs, err := parsePairs(args[1:], asString)
			if err != nil {
				return err
			}
			s, doc, store, err := f.openDoc(cmd, args[0])
			if err != nil {
				return err
			}
			defer store.Close()
			var changed bool
			_, rev, err := store.Update(cmd.Context(), doc.app, doc.env, func(l renv.Leaves) error {
				before := l.Clone()
				for _, p := range pairs {
					if err := l.Set(p.path, p.value); err != nil {
						return fmt.Errorf("%s: %w", p.key, err)
					}
				}
				changed = !before.Equal(l)
				return nil
			})
			if err != nil {
				return s.explain(err)
			}
			if !changed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: unchanged\n", doc)
				return nil
			}
			keys := make([]string, len(pairs))
			for i, p := range pairs {
				keys[i] = p.key
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: set %s (revision %d)\n", doc, strings.Join(keys, ", "), rev)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asString, "string", false, "store every VALUE as a string, even one that is JSON")
	return cmd
}

func newEnvUnsetCmd(f *envFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "unset APP[/ENV] KEY...",
		Short: "Remove keys (or whole subtrees) from a document, in one transaction",
		Long:  "unset removes each KEY, a leaf or a whole subtree. A KEY that was not set is reported on stderr and is not an error.",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			paths := make([][]string, len(args)-1)
			for i, key := range args[1:] {
				if paths[i], err = renv.ParseKey(key); err != nil {
					return err // it quotes the key
				}
			}
			s, doc, store, err := f.openDoc(cmd, args[0])
			if err != nil {
				return err
			}
			defer store.Close()
			var removed, missing []string
			_, rev, err := store.Update(cmd.Context(), doc.app, doc.env, func(l renv.Leaves) error {
				removed, missing = nil, nil
				for i, p := range paths {
					if l.Unset(p) {
						removed = append(removed, args[i+1])
					} else {
						missing = append(missing, args[i+1])
					}
				}
				return nil
			})
			if err != nil {
				return s.explain(err)
			}
			for _, key := range missing {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s was not set\n", doc, key)
			}
			if len(removed) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: unchanged\n", doc)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: unset %s (revision %d)\n", doc, strings.Join(removed, ", "), rev)
			return nil
		},
	}
}

func newEnvImportCmd(f *envFlags) *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "import APP[/ENV] FILE",
		Short: "Merge a JSON object into a document, or replace the document with it",
		Long: "import reads FILE (- for stdin), one JSON object. Its leaves are set in the document; " +
			"keys not in FILE stay, unless --replace, which makes the document exactly FILE. " +
			"Either way it is one transaction. A masked export (see export) is refused.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			name := args[1]
			var data []byte
			if name == "-" {
				name = "stdin"
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(name)
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			file, err := renv.Flatten(data)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := file.CheckNotMasked(); err != nil {
				return fmt.Errorf("refuse to import %s: %w", name, err)
			}
			keys := file.Keys()
			s, doc, store, err := f.openDoc(cmd, args[0])
			if err != nil {
				return err
			}
			defer store.Close()
			var d leavesDiff
			_, rev, err := store.Update(cmd.Context(), doc.app, doc.env, func(l renv.Leaves) error {
				before := l.Clone()
				if replace {
					for k := range l {
						delete(l, k)
					}
				}
				for _, k := range keys {
					if err := l.Set(renv.Path(k), file[k]); err != nil {
						return fmt.Errorf("%s: %w", renv.Dotted(k), err)
					}
				}
				d = diffLeaves(before, l)
				return nil
			})
			if err != nil {
				return s.explain(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d added, %d changed, %d removed (revision %d)\n", doc, d.added, d.changed, d.removed, rev)
			return nil
		},
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "make the document exactly FILE: remove keys FILE does not have")
	return cmd
}

// leavesDiff counts the leaves a change added, changed and removed.
type leavesDiff struct{ added, changed, removed int }

func diffLeaves(before, after renv.Leaves) leavesDiff {
	var d leavesDiff
	for k, v := range after {
		if old, ok := before[k]; !ok {
			d.added++
		} else if !bytes.Equal(old, v) {
			d.changed++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			d.removed++
		}
	}
	return d
}

func newEnvNukeCmd(f *envFlags) *cobra.Command {
	var allEnvs, yes bool
	cmd := &cobra.Command{
		Use:   "nuke APP[/ENV]",
		Short: "Delete a document (with --all-envs: every environment of the app)",
		Long: "nuke deletes every key of the document. It asks for confirmation on a terminal; " +
			"without one it refuses unless --yes.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.settings(cmd)
			if err != nil {
				return err
			}
			var doc envDoc
			if allEnvs {
				if strings.Contains(args[0], "/") {
					return fmt.Errorf("--all-envs deletes every environment of an app: give APP, not %s", args[0])
				}
				if doc, err = s.doc(args[0] + "/" + defaultConfigEnv); err != nil {
					return err
				}
				doc.env = ""
			} else if doc, err = s.doc(args[0]); err != nil {
				return err
			}
			store, err := s.open()
			if err != nil {
				return err
			}
			defer store.Close()
			n, docs, err := countKeys(cmd, store, doc)
			if err != nil {
				return s.explain(err)
			}
			out := cmd.OutOrStdout()
			if n == 0 {
				fmt.Fprintf(out, "%s: nothing to delete\n", doc)
				return nil
			}
			what := fmt.Sprintf("%d keys of %s", n, strings.Join(docs, ", "))
			if err := confirm(cmd, yes, "delete "+what+"?"); err != nil {
				return err
			}
			deleted, err := store.Nuke(cmd.Context(), doc.app, doc.env)
			if err != nil {
				return s.explain(err)
			}
			fmt.Fprintf(out, "%s: deleted %d keys\n", strings.Join(docs, ", "), deleted)
			return nil
		},
	}
	cmd.Flags().BoolVar(&allEnvs, "all-envs", false, "delete every environment of APP")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// countKeys is how many keys doc has, and the names of the documents they are in.
func countKeys(cmd *cobra.Command, store *renv.Store, doc envDoc) (int, []string, error) {
	if doc.env != "" {
		leaves, _, err := store.Get(cmd.Context(), doc.app, doc.env)
		return len(leaves), []string{doc.String()}, err
	}
	all, _, err := store.Dump(cmd.Context())
	if err != nil {
		return 0, nil, err
	}
	n, docs := 0, []string{}
	for env, leaves := range all[doc.app] {
		n += len(leaves)
		docs = append(docs, envDoc{app: doc.app, env: env}.String())
	}
	sort.Strings(docs)
	return n, docs, nil
}

// confirm asks question on a terminal and returns nil on yes. Without a terminal on stdin
// there is nobody to ask: it refuses unless yes was given.
func confirm(cmd *cobra.Command, yes bool, question string) error {
	if yes {
		return nil
	}
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return fmt.Errorf("refusing to %s without confirmation: stdin is not a terminal, pass --yes", strings.TrimSuffix(question, "?"))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	answer, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed: nothing deleted")
}
