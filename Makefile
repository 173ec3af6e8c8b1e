# Release artifacts. The Go toolchain is the only build dependency besides
# wixl, msibuild and mingw-w64 for the MSI and its custom action DLL
# (apt-get install wixl msitools gcc-mingw-w64-x86-64 gcc-mingw-w64-i686);
# nfpm runs via "go run".
#
#   make packages        binaries for windows/amd64, windows/386, linux/amd64,
#                        linux/arm64 + .deb, .rpm, .msi + SHA256SUMS in dist/
#   make check-packages  inspect them (dpkg-deb, rpm, msiinfo)
#   VERSION=1.2.3 make packages

DIST ?= dist

.PHONY: packages check-packages
packages:
	go run ./installer/cmd/mkpkg -out $(DIST)

check-packages:
	TPOSAGENT_PACKAGES=$(abspath $(DIST)) go test -count=1 -run TestPackages -v ./installer/
