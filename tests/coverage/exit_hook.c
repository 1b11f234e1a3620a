/* Linked into the coverage build only (make coverage), with
 * -Wl,--wrap=_exit: a process that ends with _exit (the child of `pillar
 * init` that builds the state directory, a daemonizing parent, the helper
 * children of the admin commands) writes its coverage profile first, as
 * one that returns from main or calls exit does. Without it their lines
 * would count as never run. */
#include <unistd.h>

int __llvm_profile_write_file(void);
_Noreturn void __real__exit(int status);
_Noreturn void __wrap__exit(int status);

_Noreturn void __wrap__exit(int status)
{
	(void)__llvm_profile_write_file();
	__real__exit(status);
}
