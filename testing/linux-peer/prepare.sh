#!/usr/bin/env bash
# Prepares the Linux IPsec peer VM of the interop tests (testing/linux-peer): downloads Debian's
# packaged kernel (`apt-get download`, Debian's mirrors only), unpacks it, and builds a busybox
# initramfs holding the kernel modules the peer needs (ESP, XFRM, AEADs, virtio, 9p) and an /init
# that mounts the host's / read-only over 9p and serves commands on a virtio-serial port.
#
#   bash testing/linux-peer/prepare.sh            # into target/linux-peer/ (kept if present)
#   bash testing/linux-peer/prepare.sh --force    # rebuild
#
# Needs: apt-get, dpkg, busybox-static (it also builds the cpio archive), gzip, xz-utils.
# The VM itself needs qemu-system-x86. Nothing here is committed; CI runs this before the tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${WIRESPEED_LINUX_PEER_DIR:-$root/target/linux-peer}"
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/VERSION" ] \
   && [ "$out/initrd.gz" -nt "$here/init" ] && [ "$out/initrd.gz" -nt "$0" ]; then
  echo "linux-peer: $(cat "$out/VERSION") already prepared in $out"
  exit 0
fi

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "linux-peer: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
# The guest runs this binary before the host's / is mounted: it must not need shared libraries.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "linux-peer: $busybox is dynamically linked; install busybox-static" >&2; exit 1
fi

mkdir -p "$out"
cd "$out"
# linux-image-amd64 is the metapackage; its dependency is the versioned kernel package.
pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
[ -n "$pkg" ] || { echo "linux-peer: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
if ! ls "$pkg"_*.deb >/dev/null 2>&1; then
  rm -f linux-image-*.deb
  # apt's sandbox user may not write here; the download itself is the same.
  apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null
fi
deb=$(ls "$pkg"_*.deb | head -1)
rm -rf kernel initramfs
dpkg -x "$deb" kernel
ver=$(ls kernel/lib/modules | head -1)
mods="kernel/lib/modules/$ver"
"$busybox" depmod -b kernel "$ver"

# Modules loaded at boot, in this order (modprobe pulls in their symbol dependencies); the
# crypto templates are named explicitly because they are requested by name, not by symbol
# (seqiv's IV salt comes from the default RNG: drbg, seeded by jitterentropy). veth: the
# strongSwan test builds network namespaces joined by veth pairs inside the guest.
load="virtio_pci virtio_net virtio_console 9pnet_virtio 9p
xfrm_user xfrm_algo esp4 esp6 authenc seqiv echainiv ctr ghash-generic gcm aesni-intel
chacha_generic chacha-x86_64 poly1305-x86_64 chacha20poly1305 jitterentropy_rng drbg veth"

mkdir -p initramfs/{bin,sbin,dev,proc,sys,host,tmp,etc} "initramfs/lib/modules/$ver"
cp "$busybox" initramfs/bin/busybox
ln -sf busybox initramfs/bin/sh
ln -sf ../bin/busybox initramfs/sbin/modprobe
# The closure of the list over modules.dep, and every crypto module (the kernel asks
# /sbin/modprobe for algorithms by name).
want="$(cd "$mods" && find kernel/crypto kernel/arch/x86/crypto kernel/lib/crypto -name '*.ko*')"
for m in $load; do
  f=$(grep -E "(^|/)${m//-/[-_]}\.ko(\.[a-z]+)?:" "$mods/modules.dep" | head -1 | cut -d: -f1)
  [ -n "$f" ] || { echo "linux-peer: module $m not in $deb" >&2; exit 1; }
  want="$want $f $(grep -E "^$f:" "$mods/modules.dep" | cut -d: -f2)"
done
for f in $(printf '%s\n' $want | sort -u); do
  mkdir -p "initramfs/lib/modules/$ver/$(dirname "$f")"
  cp "$mods/$f" "initramfs/lib/modules/$ver/$f"
done
cp "$mods"/modules.{order,builtin,builtin.modinfo} "initramfs/lib/modules/$ver/"
"$busybox" depmod -b initramfs "$ver"
echo "$load" > initramfs/etc/modules
cp "$here/init" initramfs/init
chmod +x initramfs/init
(cd initramfs && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1 > ../initrd.gz.new)
mv initrd.gz.new initrd.gz
cp "kernel/boot/vmlinuz-$ver" vmlinuz
# The uncompressed ELF kernel too: QEMU boots it through its PVH entry (CONFIG_PVH), skipping the
# firmware's real-mode setup and the decompression, ~10 s of a TCG boot. (The bzImage holds one
# XZ stream; without it the VM boots vmlinuz.)
rm -f vmlinux
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' vmlinuz | head -1 | cut -d: -f1 || true)
# (xz stops at the stream's end, so tail may die of SIGPIPE: the ELF magic is the check.)
if [ -n "$off" ]; then
  { tail -c +$((off + 1)) vmlinuz | xz -dc --single-stream > vmlinux.new; } 2>/dev/null || true
fi
if [ -s vmlinux.new ] && [ "$(head -c 4 vmlinux.new | od -An -c | tr -d ' ')" = '177ELF' ]; then
  mv vmlinux.new vmlinux
else
  rm -f vmlinux.new
  echo "linux-peer: no XZ kernel image in vmlinuz; the VM boots the compressed kernel" >&2
fi
echo "$ver" > VERSION
rm -rf kernel initramfs
echo "linux-peer: kernel $ver ($(du -h vmlinuz | cut -f1)$([ -s vmlinux ] && echo ', unpacked for PVH boot')), initramfs $(du -h initrd.gz | cut -f1) in $out"
