package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/pushdeploy/pushdeploy/internal/datadir"
)

// go-git keeps decoded objects in memory unless told otherwise: a cache of 96 MiB per
// repository, and every object read whole however large. These bound what a deploy holds.
const (
	// cacheBytes bounds the cache's decoded objects (trees, commits, delta bases).
	cacheBytes = 8 << 20
	// largeObject is the size above which go-git streams an object from its pack rather
	// than hold it whole. Streaming a delta reads its base again for every copy that goes
	// backwards: below this size a delta is applied in memory.
	largeObject = 1 << 20
)

var (
	// ErrBranchNotFound means the remote has no such branch (it was deleted since the push).
	ErrBranchNotFound = errors.New("branch not found on remote")
	// ErrNotAtTip means the server cannot serve a commit by id and the branch no longer
	// points at the pushed commit, so that commit cannot be fetched safely.
	ErrNotAtTip = errors.New("branch no longer points at the pushed commit")
)

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ValidSHA reports whether s is a full, lowercase 40-hex commit id.
func ValidSHA(s string) bool { return shaRE.MatchString(s) }

// Cache is an app's bare, shallow git cache. It is not safe for concurrent fetches; the agent
// runs one deploy per app at a time.
//
// It holds no go-git repository between operations: go-git's storage keeps every pack's
// index, and a map of its objects by offset, for as long as it is open, which for an agent
// that keeps its caches open would be about 100 bytes per object fetched, for good. Each
// fetch opens its own, and trees and blobs are read from the packs by an objectReader.
type Cache struct {
	dir    string
	remote Remote
	// spooled is set when the last fetch left its small blobs in the spool (see spool) for
	// the build that follows.
	spooled bool
}

// FetchResult says what a fetch did.
type FetchResult struct {
	PackBytes  int64 // size of the packs received: roughly the bytes transferred
	Fallback   bool  // the server refused a want by id, so the branch was fetched instead
	AlreadyHad bool  // the commit was in the cache already; nothing was transferred
}

// OpenCache opens the bare cache at dir, creating it if it does not exist.
func OpenCache(dir string, remote Remote) (*Cache, error) {
	if _, err := remote.Protocol(); err != nil {
		return nil, err
	}
	c := &Cache{dir: dir, remote: remote}
	_, _, err := c.open(false)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		// Private: a cache holds every commit fetched, files no release has any more among
		// them. Its parents are on the way to the app's releases (datadir's modes).
		if err := os.MkdirAll(filepath.Dir(dir), datadir.ModeTraverse); err != nil {
			return nil, fmt.Errorf("create cache %s: %w", dir, err)
		}
		if err := os.Mkdir(dir, datadir.ModePrivate); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create cache %s: %w", dir, err)
		}
		if err := os.Chmod(dir, datadir.ModePrivate); err != nil {
			return nil, fmt.Errorf("create cache %s: %w", dir, err)
		}
		_, err = git.Init(&cacheStorage{Storage: openStorage(dir, cacheBytes, 0), dir: dir}, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	return c, nil
}

// open opens the cache as a go-git repository, for one operation: see Cache. With spool,
// the packs it fetches leave their small blobs in the spool.
func (c *Cache) open(spool bool) (*git.Repository, *cacheStorage, error) {
	st := &cacheStorage{Storage: openStorage(c.dir, cacheBytes, 0), dir: c.dir, spool: spool}
	repo, err := git.Open(st, nil)
	return repo, st, err
}

// reader opens the cache's packs for reading objects; close it.
func (c *Cache) reader() (*objectReader, error) {
	packs, err := openPacks(c.dir)
	if err != nil {
		return nil, err
	}
	r := newObjectReader(packs, c.dir)
	r.ownPacks = true
	return r, nil
}

// spoolDir is where the cache's fetches spool blobs.
func (c *Cache) spoolDir() string { return filepath.Join(c.dir, spoolDir) }

// dropSpool removes the spool and what is left in it.
func (c *Cache) dropSpool() error {
	c.spooled = false
	return os.RemoveAll(c.spoolDir())
}

// openStorage opens the git storage of the bare repository dir with bounded memory:
// cacheSize bytes of decoded objects, large objects streamed. With maxOpen > 0 it keeps
// up to that many packs open between reads, and must be closed.
func openStorage(dir string, cacheSize int64, maxOpen int) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(cache.FileSize(cacheSize)),
		filesystem.Options{LargeObjectThreshold: largeObject, MaxOpenDescriptors: maxOpen})
}

// newRemote is the configured remote bound to storage: the cache's own for fetches, so
// fetched objects land there, or a throwaway one for listing refs.
func (c *Cache) newRemote(s storage.Storer) *git.Remote { return c.remote.bind(s) }

// bind is the remote as go-git's, bound to storage s.
func (r Remote) bind(s storage.Storer) *git.Remote {
	return git.NewRemote(s, &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
}

// Tip asks the remote which commit refs/heads/<branch> points at now. The agent calls it
// before fetching so that a webhook delivered late never deploys an older commit.
func (c *Cache) Tip(ctx context.Context, branch string) (string, error) {
	return c.remote.Tip(ctx, branch)
}

// Tip asks the remote which commit refs/heads/<branch> points at now (one ls-remote; no
// repository needed): ErrBranchNotFound when there is no such branch.
func (r Remote) Tip(ctx context.Context, branch string) (string, error) {
	if err := validBranch(branch); err != nil {
		return "", err
	}
	auth, err := r.auth()
	if err != nil {
		return "", err
	}
	ctx, cancel, explain := r.bound(ctx)
	defer cancel()
	refs, err := r.bind(memory.NewStorage()).ListContext(ctx, &git.ListOptions{Auth: auth})
	err = explain(err)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		refs, err = nil, nil // its last branch was deleted
	}
	if err != nil {
		return "", fmt.Errorf("list refs of %s: %w", redact(r.URL), err)
	}
	want := plumbing.NewBranchReferenceName(branch)
	for _, ref := range refs {
		if ref.Name() == want {
			return ref.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("%s on %s: %w", branch, redact(r.URL), ErrBranchNotFound)
}

// Fetch makes commit sha and its tree available in the cache, transferring as little as it
// can: no tags, depth 1 into an empty cache, and afterwards the commits already cached sent
// as haves so that only what changed since them comes over. If the server does not allow wants by id, the branch is fetched and
// the result accepted only if it is sha (ErrNotAtTip otherwise).
func (c *Cache) Fetch(ctx context.Context, sha, branch string) (res FetchResult, err error) {
	if !ValidSHA(sha) {
		return res, fmt.Errorf("fetch %q: not a 40-hex commit id", sha)
	}
	if err := validBranch(branch); err != nil {
		return res, err
	}
	if err := c.dropSpool(); err != nil { // what an earlier fetch left, if its build did not run
		return res, fmt.Errorf("fetch %.12s: %w", sha, err)
	}
	if c.has(sha) {
		res.AlreadyHad = true
		return res, c.pin(sha)
	}
	auth, err := c.remote.auth()
	if err != nil {
		return res, err
	}
	repo, st, err := c.open(true)
	if err != nil {
		return res, fmt.Errorf("open cache %s: %w", c.dir, err)
	}
	defer st.close()
	defer func() {
		if err != nil {
			c.dropSpool()
		} else if _, serr := os.Stat(c.spoolDir()); serr == nil {
			c.spooled = true
		}
	}()
	before := c.packBytes()
	defer func() { res.PackBytes = c.packBytes() - before }()
	ctx, cancel, explain := c.remote.bound(ctx)
	defer cancel()
	opts := &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(sha + ":" + pinRef(sha))},
		Depth:      c.depth(),
		Tags:       git.NoTags,
		Auth:       auth,
		Force:      true,
	}
	err = c.fetch(ctx, repo, opts)
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		res.Fallback = true
		branchRef := "refs/pushdeploy/branches/" + branch
		opts.RefSpecs = []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(branch).String() + ":" + branchRef)}
		if err = c.fetch(ctx, repo, opts); err != nil {
			return res, fmt.Errorf("fetch %s from %s: %w", branch, redact(c.remote.URL), explain(err))
		}
		ref, rerr := repo.Reference(plumbing.ReferenceName(branchRef), true)
		if rerr != nil {
			return res, fmt.Errorf("resolve fetched %s: %w", branch, rerr)
		}
		if got := ref.Hash().String(); got != sha {
			return res, fmt.Errorf("fetch %s: %s is at %.12s: %w", sha, branch, got, ErrNotAtTip)
		}
		return res, c.pin(sha)
	}
	if err != nil {
		return res, fmt.Errorf("fetch %.12s from %s: %w", sha, redact(c.remote.URL), explain(err))
	}
	if !c.has(sha) {
		return res, fmt.Errorf("fetch %.12s from %s: commit missing after fetch", sha, redact(c.remote.URL))
	}
	return res, nil
}

func (c *Cache) fetch(ctx context.Context, repo *git.Repository, opts *git.FetchOptions) error {
	err := c.newRemote(repo.Storer).FetchContext(ctx, opts)
	if errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// pin keeps a ref on every fetched commit: the refs are what the next fetch offers as haves.
func (c *Cache) pin(sha string) error {
	repo, st, err := c.open(false)
	if err != nil {
		return fmt.Errorf("pin %.12s: %w", sha, err)
	}
	defer st.close()
	ref := plumbing.NewHashReference(plumbing.ReferenceName(pinRef(sha)), plumbing.NewHash(sha))
	if err := repo.Storer.SetReference(ref); err != nil {
		return fmt.Errorf("pin %.12s: %w", sha, err)
	}
	return nil
}

// Forget drops the pins of commits no release needs any more.
func (c *Cache) Forget(shas ...string) error {
	repo, st, err := c.open(false)
	if err != nil {
		return fmt.Errorf("open cache %s: %w", c.dir, err)
	}
	defer st.close()
	for _, sha := range shas {
		err := repo.Storer.RemoveReference(plumbing.ReferenceName(pinRef(sha)))
		if err != nil {
			return fmt.Errorf("unpin %.12s: %w", sha, err)
		}
	}
	return nil
}

// depth is 1 for the first fetch. Later fetches ask for no depth: upload-pack ignores haves
// for a shallow request unless the client takes thin packs, which go-git cannot, and would
// send the whole tree again. Without a depth the pinned commits are offered as complete, so
// the server sends only the commits since them and the objects they changed.
func (c *Cache) depth() int {
	repo, st, err := c.open(false)
	if err != nil {
		return 1
	}
	defer st.close()
	refs, err := repo.References()
	if err != nil {
		return 1
	}
	defer refs.Close()
	n := 0
	refs.ForEach(func(r *plumbing.Reference) error {
		if strings.HasPrefix(r.Name().String(), "refs/pushdeploy/") && c.has(r.Hash().String()) {
			n++
		}
		return nil
	})
	if n > 0 {
		return 0
	}
	return 1
}

// validBranch applies git's ref name rules, so a branch name can never act as a refspec
// pattern ("*") or reach outside refs/heads.
func validBranch(branch string) error {
	if err := plumbing.NewBranchReferenceName(branch).Validate(); err != nil {
		return fmt.Errorf("branch %q: %w", branch, err)
	}
	return nil
}

func pinRef(sha string) string { return "refs/pushdeploy/" + sha }

func (c *Cache) has(sha string) bool {
	r, err := c.reader()
	if err != nil {
		return false
	}
	defer r.close()
	_, err = c.tree(r, sha)
	return err == nil
}

// tree returns the root tree of commit sha, which must be in the cache, read by r.
func (c *Cache) tree(r *objectReader, sha string) (*object.Tree, error) {
	h, err := r.commitTree(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("read commit %.12s: %w", sha, err)
	}
	t, err := r.readTree(h)
	if err != nil {
		return nil, fmt.Errorf("read tree of %.12s: %w", sha, err)
	}
	return t, nil
}

func (c *Cache) packBytes() int64 {
	var n int64
	ents, _ := os.ReadDir(filepath.Join(c.dir, "objects", "pack"))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pack") {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
}
