# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap what they need (Debian packages, the venv) idempotently.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Debian packages the service needs to build and run: libvirt-python compiles against
# libvirt-dev; on real nodes the service runs qemu-img (qemu-utils) and genisoimage.
DEB_RUN  := python3 python3-venv python3-dev gcc pkg-config libvirt-dev qemu-utils genisoimage
# ... and the real peers the tests talk to: xmlsec1, openssl, grid-proxy-init, Axis 1.4
# with a JDK, libvirtd + qemu for real guests (virt-xml-validate runs xmllint), the
# tools that build a tiny guest, headless Chromium (with a font) for the status page, and
# curl for the context agent run on this host (busybox-static is its other HTTP client).
# tests/test_debian_packages.py checks that these lists provide every program the code,
# the tests and this Makefile run.
DEB_TEST := xmlsec1 openssl globus-proxy-utils libaxis-java openjdk-17-jdk-headless \
            libvirt-daemon-system libxml2-utils qemu-system-x86 busybox-static cpio \
            chromium fonts-dejavu-core curl

.PHONY: demo test bench clean .deb-run .deb-test

demo: $(INSTALLED)
	$(PYTHON) -m vws.demo

test: $(INSTALLED) .deb-test
	$(PYTHON) -m pytest -q

bench: $(INSTALLED)
	for b in bench/bench_*.py; do $(PYTHON) $$b || exit 1; done

$(INSTALLED): setup.cfg pyproject.toml | .deb-run
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $@

# Install only what is missing, so a second run costs one dpkg-query.
.deb-run .deb-test: .deb-%:
	@missing=$$(for p in $(DEB_$(shell echo $* | tr a-z A-Z)); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(VENV) *.egg-info
