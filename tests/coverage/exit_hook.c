/* Linked into the coverage build only (make coverage), with
 * -Wl,--wrap=_exit,--wrap=chroot,--wrap=seccomp_load, so that every
 * process's lines count, whichever way it ends.
 *
 * _exit: a process that ends with _exit (the child of `pillar init` that
 * builds the state directory, a daemonizing parent, the helper children of
 * the admin commands) writes its coverage profile first, as one that
 * returns from main or calls exit does.
 *
 * chroot: a POP3 login worker ends locked in an empty directory, where the
 * profile file cannot be opened. Just before its chroot it opens one of
 * its own, PILLAR_COVERAGE_JAILED (made by the Makefile), into which every
 * such worker merges at exit under the runtime's file lock.
 *
 * seccomp_load: writing that profile at exit takes two calls the login
 * workers' filter does not allow (flock for the lock, ftruncate before the
 * merged profile is written back); they are added, nothing else. */
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int __llvm_profile_write_file(void);
int __llvm_profile_set_file_object(FILE *file, int enable_merge);
_Noreturn void __real__exit(int status);
_Noreturn void __wrap__exit(int status);
int __real_chroot(const char *path);
int __wrap_chroot(const char *path);
int __real_seccomp_load(scmp_filter_ctx ctx);
int __wrap_seccomp_load(scmp_filter_ctx ctx);

_Noreturn void __wrap__exit(int status)
{
	(void)__llvm_profile_write_file();
	__real__exit(status);
}

int __wrap_chroot(const char *path)
{
	const char *name = getenv("PILLAR_COVERAGE_JAILED");
	FILE *f = name != NULL ? fopen(name, "r+b") : NULL;

	if (f != NULL)
		(void)__llvm_profile_set_file_object(f, 1);
	return __real_chroot(path);
}

int __wrap_seccomp_load(scmp_filter_ctx ctx)
{
	(void)seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(flock), 0);
	(void)seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ftruncate), 0);
	return __real_seccomp_load(ctx);
}
