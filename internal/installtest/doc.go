// Package installtest tests `make install`: the layout it writes under
// DESTDIR, the systemd unit it ships (examples/systemd), and that the
// installed push2d accepts the installed example configuration.
package installtest
