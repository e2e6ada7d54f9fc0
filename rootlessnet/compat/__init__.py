"""compat: the faces rootlessnet shows to tools written for others.

- `rootlesskit`: `rootlessnet run`'s command line, every flag of rootlesskit
  1.x-3.x parsed as Go's flag package does (goflags), mapped to RunOptions;
  `--version`/`--print-semver` in rootlesskit's format.
- `slirp4netns`, `slirp4netns_api`: `rootlessnet slirp4netns`, slirp4netns
  1.2's command line and API socket on our engine.
- `shims`: `rootlessnet shims DIR`, executables named `rootlesskit` and
  `slirp4netns` for scripts that look them up on PATH.
"""
