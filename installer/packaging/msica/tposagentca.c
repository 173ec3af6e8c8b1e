/*
 * tposagentca.dll: the MSI's custom action. It hands the configuration
 * properties to the installed tposagent.exe through a pipe on its standard
 * input, never on a command line, and copies what the agent prints into the
 * MSI log.
 *
 * Why a DLL: an EXE custom action gets its arguments only from the
 * command line (visible to every process on the machine, and in the
 * deferred script of a verbose log); only a DLL custom action can read
 * CustomActionData with MsiGetProperty.
 *
 * Entry point Configure (deferred, no impersonation, hidden target):
 *   CustomActionData = "<path of tposagent.exe>\n" followed by
 *   "NAME=value\n" lines for the configuration properties (set by the
 *   type 51 action of the same name; see tposagent.wxs).
 * It runs "<exe>" install --msi, writes the NAME=value lines to its stdin,
 * closes it, logs each line of its output (stdout and stderr) as
 * "tposagent: <line>" and fails the install (ERROR_INSTALL_FAILURE, 1603,
 * so Windows Installer rolls back) when the agent exits non-zero or has
 * not finished within 5 minutes.
 *
 * Built by installer/cmd/mkpkg with mingw-w64 (x86_64 and i686).
 */
#include <windows.h>
#include <msi.h>
#include <msiquery.h>

#define MAX_DATA (1 << 20)
#define AGENT_TIMEOUT_MS (5 * 60 * 1000)

static void log_line(MSIHANDLE h, const WCHAR *line)
{
    MSIHANDLE rec = MsiCreateRecord(1);
    if (!rec)
        return;
    MsiRecordSetStringW(rec, 0, L"tposagent: [1]");
    MsiRecordSetStringW(rec, 1, line);
    MsiProcessMessage(h, INSTALLMESSAGE_INFO, rec);
    MsiCloseHandle(rec);
}

/* log_output splits the agent's output (UTF-8) into lines for the log. */
static void log_output(MSIHANDLE h, char *buf, DWORD n)
{
    DWORD start = 0;
    for (DWORD i = 0; i <= n; i++) {
        if (i == n || buf[i] == '\n') {
            DWORD len = i - start;
            if (len > 0 && buf[start + len - 1] == '\r')
                len--;
            if (len > 0) {
                int wlen = MultiByteToWideChar(CP_UTF8, 0, buf + start, (int)len, NULL, 0);
                WCHAR *w = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, (wlen + 1) * sizeof(WCHAR));
                if (w) {
                    MultiByteToWideChar(CP_UTF8, 0, buf + start, (int)len, w, wlen);
                    log_line(h, w);
                    HeapFree(GetProcessHeap(), 0, w);
                }
            }
            start = i + 1;
        }
    }
}

static UINT fail(MSIHANDLE h, const WCHAR *what)
{
    WCHAR msg[256];
    wsprintfW(msg, L"custom action: %s failed (Windows error %lu)", what, GetLastError());
    log_line(h, msg);
    return ERROR_INSTALL_FAILURE;
}

UINT __stdcall Configure(MSIHANDLE h)
{
    UINT result = ERROR_INSTALL_FAILURE;
    DWORD size = 0;
    WCHAR empty[1] = L"";
    WCHAR *data = NULL, *nl;
    char *utf8 = NULL, *out = NULL;
    int ulen = 0;
    HANDLE inR = NULL, inW = NULL, outR = NULL, outW = NULL;
    PROCESS_INFORMATION pi = {0};
    STARTUPINFOW si = {0};
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    WCHAR *cmd = NULL;

    if (MsiGetPropertyW(h, L"CustomActionData", empty, &size) != ERROR_MORE_DATA || size == 0 || size > MAX_DATA) {
        log_line(h, L"custom action: no CustomActionData (the path of tposagent.exe comes first)");
        return ERROR_INSTALL_FAILURE;
    }
    size++;
    data = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, size * sizeof(WCHAR));
    if (!data || MsiGetPropertyW(h, L"CustomActionData", data, &size) != ERROR_SUCCESS) {
        result = fail(h, L"read CustomActionData");
        goto done;
    }
    nl = wcschr(data, L'\n');
    if (!nl) {
        log_line(h, L"custom action: CustomActionData has no line break after the path of tposagent.exe");
        goto done;
    }
    *nl = 0;

    /* "<exe>" install --msi (not wsprintfW: it stops at 1024 characters) */
    cmd = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, (lstrlenW(data) + 64) * sizeof(WCHAR));
    if (!cmd)
        goto done;
    lstrcpyW(cmd, L"\"");
    lstrcatW(cmd, data);
    lstrcatW(cmd, L"\" install --msi");

    ulen = WideCharToMultiByte(CP_UTF8, 0, nl + 1, -1, NULL, 0, NULL, NULL);
    utf8 = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, ulen > 0 ? ulen : 1);
    if (!utf8)
        goto done;
    if (ulen > 0)
        WideCharToMultiByte(CP_UTF8, 0, nl + 1, -1, utf8, ulen, NULL, NULL);
    ulen = lstrlenA(utf8);

    if (!CreatePipe(&inR, &inW, &sa, 0) || !CreatePipe(&outR, &outW, &sa, 0)) {
        result = fail(h, L"CreatePipe");
        goto done;
    }
    SetHandleInformation(inW, HANDLE_FLAG_INHERIT, 0);
    SetHandleInformation(outR, HANDLE_FLAG_INHERIT, 0);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = inR;
    si.hStdOutput = outW;
    si.hStdError = outW;
    if (!CreateProcessW(data, cmd, NULL, NULL, TRUE, CREATE_NO_WINDOW, NULL, NULL, &si, &pi)) {
        result = fail(h, L"start tposagent.exe");
        goto done;
    }
    CloseHandle(inR);
    inR = NULL;
    CloseHandle(outW);
    outW = NULL;

    /* The agent reads all of its input before it prints anything. */
    {
        DWORD off = 0, w;
        while (off < (DWORD)ulen && WriteFile(inW, utf8 + off, (DWORD)ulen - off, &w, NULL))
            off += w;
    }
    CloseHandle(inW);
    inW = NULL;

    /* Copy the output into the log while the agent runs; give up after
       AGENT_TIMEOUT_MS (a hung install must not hang msiexec). */
    {
        DWORD cap = 65536, n = 0, r, avail, waited = 0;
        BOOL running = TRUE, timedOut = FALSE;
        out = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, cap);
        if (!out) {
            result = fail(h, L"allocate the output buffer");
            TerminateProcess(pi.hProcess, 1);
            goto done;
        }
        for (;;) {
            avail = 0;
            if (!PeekNamedPipe(outR, NULL, 0, NULL, &avail, NULL))
                break; /* the agent and everything it started closed the pipe */
            if (avail > 0) {
                if (!ReadFile(outR, out + n, min(avail, cap - n), &r, NULL) || r == 0)
                    break;
                n += r;
                if (n == cap) {
                    log_output(h, out, n);
                    n = 0;
                }
                continue;
            }
            if (!running)
                break;
            if (WaitForSingleObject(pi.hProcess, 100) == WAIT_OBJECT_0) {
                running = FALSE; /* drain what is left, then stop */
                continue;
            }
            waited += 100;
            if (waited >= AGENT_TIMEOUT_MS) {
                timedOut = TRUE;
                TerminateProcess(pi.hProcess, 1);
                WaitForSingleObject(pi.hProcess, 5000);
                break;
            }
        }
        if (n > 0)
            log_output(h, out, n);
        if (!timedOut && WaitForSingleObject(pi.hProcess, AGENT_TIMEOUT_MS - min(waited, AGENT_TIMEOUT_MS)) != WAIT_OBJECT_0) {
            timedOut = TRUE;
            TerminateProcess(pi.hProcess, 1);
        }
        if (timedOut) {
            log_line(h, L"tposagent install --msi did not finish within 5 minutes and was stopped: the install is rolled back");
            goto done;
        }
    }
    {
        DWORD code = 1;
        GetExitCodeProcess(pi.hProcess, &code);
        if (code == 0) {
            result = ERROR_SUCCESS;
        } else {
            WCHAR msg[128];
            wsprintfW(msg, L"tposagent install --msi exited with %lu: the install is rolled back", code);
            log_line(h, msg);
        }
    }

done:
    if (pi.hProcess)
        CloseHandle(pi.hProcess);
    if (pi.hThread)
        CloseHandle(pi.hThread);
    if (inR)
        CloseHandle(inR);
    if (inW)
        CloseHandle(inW);
    if (outR)
        CloseHandle(outR);
    if (outW)
        CloseHandle(outW);
    if (utf8) {
        SecureZeroMemory(utf8, ulen);
        HeapFree(GetProcessHeap(), 0, utf8);
    }
    if (data) {
        SecureZeroMemory(data, size * sizeof(WCHAR));
        HeapFree(GetProcessHeap(), 0, data);
    }
    if (cmd)
        HeapFree(GetProcessHeap(), 0, cmd);
    if (out)
        HeapFree(GetProcessHeap(), 0, out);
    return result;
}
