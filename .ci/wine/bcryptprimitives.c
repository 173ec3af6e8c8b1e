/*
 * bcryptprimitives.dll for wine 8: exports ProcessPrng, which Go 1.24 and
 * later load at start-up and wine 8 does not provide. It fills the buffer
 * from RtlGenRandom (advapi32!SystemFunction036), which takes at most a
 * ULONG per call, so large requests are served in chunks.
 *
 * Test rig only: installed into a wine prefix's system32 by setup.sh; it is
 * never shipped with the agent (real Windows 8 and later have the DLL).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		size -= chunk;
	}
	return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
	(void)instance;
	(void)reason;
	(void)reserved;
	return TRUE;
}
