#!/usr/bin/env bash
# Builds the Debian package OUTDIR/pushdeploy_<version>_amd64.deb (default OUTDIR: dist/)
# from the checkout this script is in, with dpkg-deb from a staging tree: `make build`'s
# static binary, the unit, the example config, the maintainer scripts and the docs in
# packaging/. Prints the package's path. `make deb` runs it; so do packaging's tests.
#
# The version comes from git: a tag vX.Y.Z gives X.Y.Z-1, N commits after it
# X.Y.Z+gitN.SHA-1, no tag 0.0~gitYYYYMMDD.N.SHA-1 (the commit date, N commits in
# HEAD); a tree with uncommitted changes adds +dirty. DEB_VERSION=… overrides it.
# GO=… names the go command. DEB_COMPRESSION=gzip or none (dpkg-deb -Z) trades size for
# time: xz, the default, takes some 15 s of CPU; the tests use none. Needs git, make, go,
# dpkg-deb.
set -euo pipefail
umask 022 # the package's directories and files get their modes from here

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
GO=${GO:-go}
export GO

# debian_version prints the package version for the checkout (see above).
debian_version() {
	local sha desc upstream n date
	sha=$(git -C "$root" rev-parse --short=7 HEAD)
	if desc=$(git -C "$root" describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
		# vX.Y.Z[-rc1]-N-gSHA
		n=${desc%-g*}
		n=${n##*-}
		upstream=${desc%-*-g*}
		upstream=${upstream#v}
		upstream=${upstream//-/\~} # 1.2.0-rc1 sorts before 1.2.0: 1.2.0~rc1
		if [ "$n" != 0 ]; then upstream="$upstream+git$n.$sha"; fi
	else
		date=$(TZ=UTC git -C "$root" log -1 --format=%cd --date=format-local:%Y%m%d)
		n=$(git -C "$root" rev-list --count HEAD)
		upstream="0.0~git$date.$n.$sha"
	fi
	if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
		upstream="$upstream+dirty"
	fi
	echo "$upstream-1"
}

if [ -n "${DEB_VERSION:-}" ]; then
	version=$DEB_VERSION
elif ! version=$(debian_version); then
	echo "build-deb: not a git checkout: set DEB_VERSION" >&2
	exit 1
fi
dpkg --validate-version "$version"
# The build's date: the commit's, so that two builds of one commit are the same package.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
doc=$pkg/usr/share/doc/pushdeploy
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
	"$pkg/etc/pushdeploy" "$doc" "$pkg/usr/share/man/man1" \
	"$pkg/usr/share/lintian/overrides"
# 0711, as the agent keeps it (internal/datadir): the apps' dynamic users pass through to
# their releases, nobody lists what is deployed.
install -d -m 0711 "$pkg/var/lib/pushdeploy"

# The binary reports the package's version (`pushdeploy version`).
make -s -C "$root" build BIN="$pkg/usr/bin/pushdeploy" VERSION="$version" GO="$GO"
chmod 0755 "$pkg/usr/bin/pushdeploy"

install -m 0644 "$root/packaging/pushdeploy.service" "$pkg/lib/systemd/system/"
install -m 0644 "$root/packaging/agent.yaml" "$pkg/etc/pushdeploy/agent.yaml"
for script in postinst prerm postrm; do
	install -m 0755 "$root/packaging/debian/$script" "$pkg/DEBIAN/$script"
done
echo /etc/pushdeploy/agent.yaml >"$pkg/DEBIAN/conffiles"

install -m 0644 "$root/packaging/debian/lintian-overrides" "$pkg/usr/share/lintian/overrides/pushdeploy"
gzip -9n <"$root/packaging/pushdeploy.1" >"$pkg/usr/share/man/man1/pushdeploy.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/pushdeploy.1.gz"
install -m 0644 "$root/packaging/debian/README.Debian" "$doc/README.Debian"
gzip -9n <"$root/README.md" >"$doc/README.md.gz"
"$GO" run "$root/scripts/debcopyright" -header "$root/packaging/debian/copyright" \
	"$pkg/usr/bin/pushdeploy" >"$doc/copyright"
{
	echo "pushdeploy ($version) bookworm; urgency=medium"
	echo
	echo "  * Built from git commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)."
	echo
	echo " -- pushdeploy <dev@pushdeploy.invalid>  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc"/*

cat >"$pkg/DEBIAN/control" <<EOF
Package: pushdeploy
Version: $version
Architecture: amd64
Maintainer: pushdeploy <dev@pushdeploy.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: systemd (>= 247), default-dbus-system-bus | dbus-system-bus
Section: admin
Priority: optional
Description: per-host deploy agent: a signed git push deploys that exact commit
 pushdeploy answers signed push webhooks (GitHub's, or any git server's through
 its post-receive hook), fetches exactly the pushed commit, lays it out as an
 immutable, content-addressed release and rolls the release's systemd services
 over in health-checked batches, reverting a release that fails its checks.
 .
 This package holds the agent as a sandboxed systemd service
 (pushdeploy.service), its command line and an example configuration.
EOF
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"
find "$pkg" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb="$out/pushdeploy_${version}_amd64.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
