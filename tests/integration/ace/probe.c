/* trustd's own ACE probe: checks inside a pod what appc's ACE validator checks
 * (see ../../../docs and shared/reference/ace-validator.md; written from that contract, not
 * from the validator's code). Built static by tests/integration/test_ace_validator.py.
 *
 *   ace-validator prestart | main | sidekick | poststop
 *
 * Prints "<stage> OK" on stdout, or "<stage> FAIL: <why>" on stderr and exits 1.
 * Time bounds are generous (no wall-clock thresholds in tests): they only stop a wait that
 * would never end; two apps run one after the other would still fail the rendezvous. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static const char *stage = "?";

static void fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s FAIL: ", stage);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static void must_exist(const char *path, int want) {
    if (exists(path) != want)
        fail("%s %s", path, want ? "does not exist" : "already exists");
}

static void create(const char *path) {
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) fail("cannot create %s: %s", path, strerror(errno));
    close(fd);
}

static void wait_for(const char *path) {
    for (int i = 0; i < 1200; i++) { /* 60 s at most */
        if (exists(path)) return;
        usleep(50000);
    }
    fail("%s never appeared (the other app did not run alongside)", path);
}

static void env_is(const char *name, const char *want) {
    const char *got = getenv(name);
    if (!got || strcmp(got, want) != 0) fail("%s is \"%s\", not \"%s\"", name, got ? got : "(unset)", want);
}

/* /db is a mount point, read-write, by /proc/self/mountinfo (field 5: mount point, 6: options) */
static void rw_mount(const char *point) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    int found = 0;
    if (!f) fail("cannot read /proc/self/mountinfo: %s", strerror(errno));
    while (fgets(line, sizeof line, f)) {
        char *fields[6];
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        int n = 0;
        while (tok && n < 6) { fields[n++] = tok; tok = strtok_r(NULL, " ", &save); }
        if (n == 6 && strcmp(fields[4], point) == 0) {
            found = 1;
            if (strncmp(fields[5], "rw", 2) != 0 || (fields[5][2] && fields[5][2] != ','))
                fail("%s is mounted %s, not rw", point, fields[5]);
        }
    }
    fclose(f);
    if (!found) fail("%s is not a mount point", point);
}

/* ---- the metadata service, over plain HTTP/1.0 ---- */

struct reply { int status; char type[256]; char *body; };

static void http(const char *method, const char *path, const char *form, struct reply *r) {
    const char *url = getenv("AC_METADATA_URL");
    char host[64], prefix[512], req[8192];
    int port;
    if (!url || sscanf(url, "http://%63[^:/]:%d%511s", host, &port, prefix) < 2)
        fail("AC_METADATA_URL \"%s\" is not http://HOST:PORT/...", url ? url : "(unset)");
    if (sscanf(url, "http://%*[^:/]:%*d%511s", prefix) != 1) prefix[0] = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) fail("MDS host %s is not an IPv4 address", host);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) fail("cannot reach the MDS: %s", strerror(errno));
    int n = snprintf(req, sizeof req,
                     "%s %s/acMetadata/v1%s HTTP/1.0\r\nHost: %s:%d\r\nMetadata-Flavor: AppContainer\r\n",
                     method, prefix, path, host, port);
    if (form)
        n += snprintf(req + n, sizeof req - n,
                      "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(form), form);
    else
        n += snprintf(req + n, sizeof req - n, "\r\n");
    if (write(s, req, n) != n) fail("cannot send to the MDS");
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t got;
    while ((got = read(s, buf + len, cap - len)) > 0) len += got;
    close(s);
    buf[len] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/%*s %d", &r->status) != 1) fail("%s %s: not an HTTP reply", method, path);
    *end = 0;
    r->body = end + 4;
    r->type[0] = 0;
    for (char *h = strstr(buf, "\r\n"); h; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "Content-Type:", 13) == 0) {
            char *v = h + 15, *e = strstr(v, "\r\n");
            while (*v == ' ') v++;
            snprintf(r->type, sizeof r->type, "%.*s", e ? (int)(e - v) : (int)strlen(v), v);
        }
}

static char *get(const char *path, const char *type) {
    struct reply r;
    http("GET", path, NULL, &r);
    if (r.status != 200) fail("GET %s: status %d", path, r.status);
    if (strcmp(r.type, type) != 0) fail("GET %s: Content-Type \"%s\", not \"%s\"", path, r.type, type);
    return r.body;
}

static void urlencode(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (; *in && o + 4 < cap; in++) {
        if (isalnum((unsigned char)*in) || strchr("-_.~", *in)) out[o++] = *in;
        else o += snprintf(out + o, cap - o, "%%%02X", (unsigned char)*in);
    }
    out[o] = 0;
}

static int is_uuid(const char *s) {
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) { if (s[i] != '-') return 0; }
        else if (!isxdigit((unsigned char)s[i])) return 0;
    }
    return s[36] == 0 || s[36] == '\n';
}

/* every "name" an annotations reply lists must be in the document it mirrors */
static void names_in(const char *annotations, const char *doc, const char *what) {
    if (strcmp(annotations, "null") == 0) return;
    if (annotations[0] != '[') fail("%s is neither a JSON list nor null: %.80s", what, annotations);
    for (const char *p = strstr(annotations, "\"name\""); p; p = strstr(p + 6, "\"name\"")) {
        const char *q = strchr(p + 6, '"');
        const char *e = q ? strchr(q + 1, '"') : NULL;
        char name[256];
        if (!e) fail("%s: malformed", what);
        snprintf(name, sizeof name, "\"%.*s\"", (int)(e - q - 1), q + 1);
        if (!strstr(doc, name)) fail("%s names %s, which its manifest does not", what, name);
    }
}

static void metadata(void) {
    const char *app = "ace-validator-main";
    char path[512], form[4096], sig_enc[2048], uuid[64];
    char *manifest = get("/pod/manifest", "application/json");
    if (!strstr(manifest, "PodManifest")) fail("/pod/manifest is not a PodManifest");
    snprintf(uuid, sizeof uuid, "%s", get("/pod/uuid", "text/plain; charset=us-ascii"));
    if (!is_uuid(uuid)) fail("/pod/uuid \"%s\" is not a UUID", uuid);
    names_in(get("/pod/annotations", "application/json"), manifest, "/pod/annotations");
    snprintf(path, sizeof path, "/apps/%s/image/manifest", app);
    char *image = get(path, "application/json");
    if (!strstr(image, "coreos.com/ace-validator-main")) fail("%s is not main's image manifest", path);
    snprintf(path, sizeof path, "/apps/%s/image/id", app);
    char *id = get(path, "text/plain; charset=us-ascii");
    if (strncmp(id, "sha512-", 7) != 0 || strlen(id) != 7 + 128) fail("%s \"%s\" is not a full sha512 ID", path, id);
    if (!strstr(manifest, id)) fail("%s is not the pod manifest's image id", path);
    snprintf(path, sizeof path, "/apps/%s/annotations", app);
    char *annotations = get(path, "application/json");
    names_in(annotations, image, path);
    if (!strstr(annotations, "lorem")) fail("%s lacks the image's annotation \"lorem\"", path);
    struct reply r;
    http("POST", "/pod/hmac/sign", "content=ace-probe", &r);
    if (r.status != 200) fail("POST /pod/hmac/sign: status %d", r.status);
    urlencode(r.body, sig_enc, sizeof sig_enc);
    snprintf(form, sizeof form, "content=ace-probe&uuid=%s&signature=%s", uuid, sig_enc);
    http("POST", "/pod/hmac/verify", form, &r);
    if (r.status != 200) fail("POST /pod/hmac/verify of its own signature: status %d", r.status);
    snprintf(form, sizeof form, "content=other&uuid=%s&signature=%s", uuid, sig_enc);
    http("POST", "/pod/hmac/verify", form, &r);
    if (r.status != 403) fail("POST /pod/hmac/verify of another content: status %d, not 403", r.status);
}

int main(int argc, char **argv) {
    char cwd[4096];
    if (argc != 2) { fprintf(stderr, "usage: %s prestart|main|sidekick|poststop\n", argv[0]); return 2; }
    stage = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(stage, "prestart") == 0) {
        must_exist("/prestart", 0); must_exist("/main", 0); must_exist("/poststop", 0);
        create("/prestart");
    } else if (strcmp(stage, "main") == 0) {
        must_exist("/prestart", 1); must_exist("/main", 0); must_exist("/poststop", 0);
        create("/main");
        env_is("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/opt/acvalidator") != 0) fail("cwd is %s, not /opt/acvalidator", cwd);
        env_is("IN_ACE_VALIDATOR", "correct");
        env_is("AC_APP_NAME", "ace-validator-main");
        rw_mount("/db");
        metadata();
        wait_for("/db/sidekick");
        create("/db/main");
    } else if (strcmp(stage, "sidekick") == 0) {
        env_is("AC_APP_NAME", "ace-validator-sidekick");
        rw_mount("/db");
        create("/db/sidekick");
        wait_for("/db/main");
    } else if (strcmp(stage, "poststop") == 0) {
        must_exist("/prestart", 1); must_exist("/main", 1); must_exist("/poststop", 0);
        create("/poststop");
    } else {
        fail("unknown stage");
    }
    printf("%s OK\n", stage);
    return 0;
}
