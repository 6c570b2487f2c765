/* An aarch64 `python3` for the kernel's tests under qemu-user (Makefile: arm64-test).
 *
 * Debian packages the aarch64 interpreter as a library (libpython3.11:arm64, Multi-Arch: same,
 * beside the host's own Python); its executable is not co-installable with the host's. This is
 * that executable: CPython's own main, linked against the aarch64 libpython. */
extern int Py_BytesMain(int argc, char **argv);

int main(int argc, char **argv) { return Py_BytesMain(argc, argv); }
