/*
 * A stand-in for Windows' bcryptprimitives.dll, for Wine releases that lack it (Debian 12's
 * Wine 8): Rust's standard library asks it for random bytes (ProcessPrng) when a program
 * starts. This one answers from RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 * `cargo xtask test` builds it with mingw-w64 and puts it beside the Windows executables;
 * Windows itself always has the real one, so it never ships.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
