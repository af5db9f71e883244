/*
 * capi_smoke.c: drives libponder through include/ponder.h the way an application would.
 * tests/suite/capi.rs compiles it (-Wall -Wextra -Werror), links it to the cdylib and runs it:
 *
 *   capi_smoke INDEX_DIR DOCS_DIR MISSING_INDEX_DIR CANCEL_INDEX_DIR [OPTIONS_JSON]
 *
 * DOCS_DIR is a folder of notes holding sourdough-schedule.md; OPTIONS_JSON (default
 * {"device": "cpu"}) is what the handles are opened with. Prints one line per failed
 * check and exits non-zero if any failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "ponder.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0;
static int failures = 0;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(int line, const char* what, const char* detail) {
    pthread_mutex_lock(&report_lock);
    fprintf(stderr, "FAIL line %d: %s%s%s\n", line, what, detail ? ": " : "", detail ? detail : "");
    failures++;
    pthread_mutex_unlock(&report_lock);
}

static void count_check(void) {
    pthread_mutex_lock(&report_lock);
    checks++;
    pthread_mutex_unlock(&report_lock);
}

#define CHECK(cond, detail)                 \
    do {                                    \
        count_check();                      \
        if (!(cond)) fail(__LINE__, #cond, (detail)); \
    } while (0)

/* Checks a return code; on an expected failure also that a message came with it. Frees err. */
static void expect(int line, int got, int want, char* err, const char* what) {
    count_check();
    if (got != want) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s: got %d (%s), want %d (%s)", what, got, ponder_errstr(got), want,
                 ponder_errstr(want));
        fail(line, buf, err ? err : "(no message)");
    } else if (want != PONDER_OK && (err == NULL || err[0] == '\0')) {
        fail(line, what, "failed without a message");
    } else if (want == PONDER_OK && err != NULL) {
        fail(line, what, "succeeded but left a message");
    }
    ponder_free_string(err);
}
#define EXPECT(call, want, what)                 \
    do {                                         \
        char* err_ = NULL;                       \
        int rc_ = (call);                        \
        expect(__LINE__, rc_, (want), err_, (what)); \
    } while (0)
/* EXPECT with the message kept (caller frees it). */
#define EXPECT_MSG(call, want, what, msg_out)                   \
    do {                                                        \
        char* err_ = NULL;                                      \
        int rc_ = (call);                                       \
        *(msg_out) = err_ ? strdup(err_) : NULL;                \
        expect(__LINE__, rc_, (want), err_, (what));            \
    } while (0)

/* The integer after "key": in a flat JSON text, or -1. */
static long json_int(const char* json, const char* key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char* p = json ? strstr(json, pat) : NULL;
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* Whether the first hit's path contains `needle`. */
static int first_path_has(const char* hits, const char* needle) {
    const char* p = hits ? strstr(hits, "\"path\":\"") : NULL;
    if (!p) return 0;
    p += strlen("\"path\":\"");
    const char* end = strchr(p, '"');
    const char* found = strstr(p, needle);
    return end && found && found < end;
}

struct progress_counts {
    int walked, progress, commits, warnings, other;
};

static int on_progress(const char* event, void* user) {
    struct progress_counts* c = user;
    if (strstr(event, "\"event\":\"walked\"")) c->walked++;
    else if (strstr(event, "\"event\":\"progress\"")) c->progress++;
    else if (strstr(event, "\"event\":\"commit\"")) c->commits++;
    else if (strstr(event, "\"event\":\"warning\"")) c->warnings++;
    else c->other++;
    return 0;
}

static int cancel_on_walk(const char* event, void* user) {
    if (strstr(event, "\"event\":\"walked\"")) ponder_cancel((ponder_engine*)user);
    return 0;
}

static int stop_at_once(const char* event, void* user) {
    (void)event;
    (void)user;
    return 1;
}

#ifdef PONDER_SMOKE_LEAK_CANARY
/* Where the leak canary drops its error messages (volatile: the references really go). */
static char* volatile dropped;
#endif

struct searcher {
    ponder_engine* db;
    int id;
    int ok;
};

static const char* const dough_query = "{\"query\": \"how long should the dough proof overnight\", \"k\": 3}";

static void* search_thread(void* arg) {
    struct searcher* s = arg;
    static const char* const others[] = {
        "{\"query\": \"routers and wifi at home\", \"k\": 2, \"mode\": \"dense\"}",
        "{\"queries\": [\"temples in Kyoto\", \"travel itinerary\"], \"k\": 2}",
        "{\"query\": \"index funds or bonds\", \"mode\": \"lexical\", \"k\": 1}",
        "{\"query\": \"chaperone proteins folding\", \"k\": 2, \"exact\": true}",
    };
    s->ok = 1;
    for (int i = 0; i < 6; i++) {
        const char* req = (i % 2 == 0) ? dough_query : others[(s->id + i) % 4];
        char* hits = NULL;
        char* err = NULL;
        int rc = ponder_search(s->db, req, &hits, &err);
        if (rc != PONDER_OK || hits == NULL || strstr(hits, "\"hits\":[{") == NULL) {
            fail(__LINE__, "threaded search", err ? err : req);
            s->ok = 0;
        } else if (req == dough_query && !first_path_has(hits, "sourdough-schedule.md")) {
            fail(__LINE__, "threaded dough search did not rank the sourdough note first", hits);
            s->ok = 0;
        }
        ponder_free_string(hits);
        ponder_free_string(err);
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s INDEX_DIR DOCS_DIR MISSING_INDEX_DIR CANCEL_INDEX_DIR [OPTIONS_JSON]\n", argv[0]);
        return 2;
    }
    const char* index_dir = argv[1];
    const char* docs = argv[2];
    const char* missing = argv[3];
    const char* cancel_dir = argv[4];
    const char* cpu = argc == 6 ? argv[5] : "{\"device\": \"cpu\"}";
    char path[4096], request[8192];
    char* msg = NULL;

#ifdef PONDER_SMOKE_LEAK_CANARY
    /* Built to prove that the leak checker sees the library's allocations: leaks on purpose. */
    for (int i = 0; i < 4; i++) {
        char* e = NULL;
        ponder_engine* h = NULL;
        ponder_open(NULL, NULL, &h, &e);
        dropped = e;
        dropped = NULL;
    }
    printf("capi_smoke: leaked 4 error messages on purpose\n");
    return 0;
#endif

    /* Version and code names. */
    CHECK(ponder_version() != NULL && strlen(ponder_version()) > 0, "empty version");
    CHECK(strcmp(ponder_errstr(PONDER_ERR_NO_INDEX), "no index") == 0, ponder_errstr(PONDER_ERR_NO_INDEX));
    CHECK(strcmp(ponder_errstr(12345), "unknown code") == 0, "unknown code name");
    ponder_free_string(NULL);
    CHECK(ponder_close(NULL) == PONDER_OK, "close(NULL)");

    /* Opening: bad arguments are codes with messages, and *out stays NULL. */
    ponder_engine* db = (ponder_engine*)&checks; /* garbage that must be overwritten */
    EXPECT(ponder_open(NULL, NULL, &db, &err_), PONDER_ERR_INVALID, "open(NULL dir)");
    CHECK(db == NULL, "*out not cleared on failure");
    CHECK(ponder_open(NULL, NULL, &db, NULL) == PONDER_ERR_INVALID, "open without err");
    EXPECT(ponder_open(index_dir, NULL, NULL, &err_), PONDER_ERR_INVALID, "open(NULL out)");
    EXPECT(ponder_open("", NULL, &db, &err_), PONDER_ERR_INVALID, "open(empty dir)");
    EXPECT(ponder_open("\xff\xfe/idx", NULL, &db, &err_), PONDER_ERR_INVALID, "open(invalid UTF-8)");
    EXPECT(ponder_open(index_dir, "{\"device\": ", &db, &err_), PONDER_ERR_INVALID, "open(malformed JSON)");
    EXPECT(ponder_open(index_dir, "{\"colour\": 1}", &db, &err_), PONDER_ERR_INVALID, "open(unknown field)");
    EXPECT(ponder_open(index_dir, "{\"device\": \"tpu\"}", &db, &err_), PONDER_ERR_INVALID, "open(bad device)");
    EXPECT(ponder_open(index_dir, "{\"vectors\": \"i4\"}", &db, &err_), PONDER_ERR_INVALID, "open(bad vectors)");
    EXPECT(ponder_open(index_dir, "[1, 2]", &db, &err_), PONDER_ERR_INVALID, "open(options not an object)");
    EXPECT_MSG(ponder_open(missing, "{\"must_exist\": true}", &db, &err_), PONDER_ERR_NO_INDEX, "open(must_exist)", &msg);
    CHECK(db == NULL, "*out not cleared on failure");
    free(msg);

    /* A directory without an index: opening works, reading says there is no index. */
    ponder_engine* none = NULL;
    EXPECT(ponder_open(missing, cpu, &none, &err_), PONDER_OK, "open(missing index)");
    char* out = (char*)&checks;
    EXPECT_MSG(ponder_search(none, dough_query, &out, &err_), PONDER_ERR_NO_INDEX, "search(missing index)", &msg);
    CHECK(out == NULL, "*hits_json not cleared on failure");
    CHECK(msg != NULL && strstr(msg, "no index") != NULL, msg);
    free(msg);
    EXPECT(ponder_status(none, &out, &err_), PONDER_ERR_NO_INDEX, "status(missing index)");
    snprintf(path, sizeof path, "%s/sourdough-schedule.md", docs);
    EXPECT(ponder_get(none, path, 0, 0, &out, &err_), PONDER_ERR_NO_INDEX, "get(missing index)");
    CHECK(ponder_close(none) == PONDER_OK, "close(missing)");

    /* The index. */
    EXPECT(ponder_open(index_dir, cpu, &db, &err_), PONDER_OK, "open(index)");
    if (db == NULL) {
        fprintf(stderr, "capi_smoke: cannot go on without a handle\n");
        return 1;
    }
    EXPECT(ponder_index(NULL, NULL, NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "index(NULL engine)");
    EXPECT(ponder_index(db, "{\"paths\": 5}", NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "index(paths: 5)");
    EXPECT(ponder_index(db, "{\"paths\": [", NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "index(malformed)");
    EXPECT(ponder_index(db, "{\"pathz\": []}", NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "index(unknown field)");
    EXPECT(ponder_index(db, NULL, NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "index(no paths, no roots)");
    EXPECT(ponder_update(db, "{}", NULL, NULL, NULL, &err_), PONDER_ERR_INVALID, "update(no paths)");

    struct progress_counts counts = {0, 0, 0, 0, 0};
    char* report = NULL;
    snprintf(request, sizeof request, "{\"paths\": [\"%s\"]}", docs);
    EXPECT(ponder_index(db, request, on_progress, &counts, &report, &err_), PONDER_OK, "index(docs)");
    printf("index report: %s\n", report ? report : "(none)");
    long seen = json_int(report, "files_seen");
    CHECK(seen >= 5, report);
    CHECK(json_int(report, "files_indexed") == seen, report);
    CHECK(json_int(report, "chunks_added") >= seen, report);
    CHECK(json_int(report, "generation") >= 1, report);
    ponder_free_string(report);
    CHECK(counts.walked == 1 && counts.progress == seen && counts.commits >= 1 && counts.other == 0,
          "progress events");

    /* Running it again changes nothing; the report pointer is optional. */
    EXPECT(ponder_index(db, request, NULL, NULL, NULL, &err_), PONDER_OK, "index(again, no report)");

    /* Search: errors first. */
    char* hits = NULL;
    EXPECT(ponder_search(NULL, dough_query, &hits, &err_), PONDER_ERR_INVALID, "search(NULL engine)");
    EXPECT(ponder_search(db, NULL, &hits, &err_), PONDER_ERR_INVALID, "search(NULL request)");
    EXPECT(ponder_search(db, dough_query, NULL, &err_), PONDER_ERR_INVALID, "search(NULL hits)");
    EXPECT(ponder_search(db, "{\"query\": ", &hits, &err_), PONDER_ERR_INVALID, "search(malformed)");
    EXPECT(ponder_search(db, "{\"query\": \"x\", \"colour\": 1}", &hits, &err_), PONDER_ERR_INVALID, "search(unknown field)");
    EXPECT(ponder_search(db, "{\"query\": \"\xc3\x28\"}", &hits, &err_), PONDER_ERR_INVALID, "search(invalid UTF-8)");
    EXPECT(ponder_search(db, "{\"k\": 3}", &hits, &err_), PONDER_ERR_INVALID, "search(no query)");
    EXPECT(ponder_search(db, "{\"query\": \"x\", \"k\": 0}", &hits, &err_), PONDER_ERR_INVALID, "search(k 0)");
    EXPECT(ponder_search(db, "\"dough\"", &hits, &err_), PONDER_ERR_INVALID, "search(not an object)");
    CHECK(hits == NULL, "hits set by a failed search");

    /* The dough question finds the sourdough note. */
    EXPECT(ponder_warm(db, &err_), PONDER_OK, "warm");
    EXPECT(ponder_search(db, dough_query, &hits, &err_), PONDER_OK, "search(dough)");
    printf("hits: %.300s...\n", hits ? hits : "(none)");
    CHECK(hits != NULL && strncmp(hits, "{\"hits\":[", 9) == 0, hits);
    CHECK(first_path_has(hits, "sourdough-schedule.md"), hits);
    CHECK(strstr(hits, "\"start_line\":") && strstr(hits, "\"highlights\":") && strstr(hits, "\"chunk_id\":"), hits);
    ponder_free_string(hits);
    hits = NULL;
    snprintf(request, sizeof request, "{\"query\": \"dough\", \"mode\": \"lexical\", \"path\": [\"kyoto-trip.md\"]}");
    EXPECT(ponder_search(db, request, &hits, &err_), PONDER_OK, "search(filtered)");
    CHECK(hits != NULL && strstr(hits, "sourdough") == NULL, hits);
    ponder_free_string(hits);
    hits = NULL;

    /* Status and get. */
    char* status = NULL;
    EXPECT(ponder_status(db, &status, &err_), PONDER_OK, "status");
    CHECK(json_int(status, "files") == seen, status);
    CHECK(status != NULL && strstr(status, "\"vectors\":\"i8\"") != NULL, status);
    ponder_free_string(status);
    EXPECT(ponder_status(db, NULL, &err_), PONDER_ERR_INVALID, "status(NULL out)");

    char* doc = NULL;
    EXPECT(ponder_get(db, path, 0, 0, &doc, &err_), PONDER_OK, "get(whole)");
    CHECK(doc != NULL && strstr(doc, "\"start_line\":1") && json_int(doc, "total_lines") > 3, doc);
    ponder_free_string(doc);
    doc = NULL;
    EXPECT(ponder_get(db, path, 2, 3, &doc, &err_), PONDER_OK, "get(lines 2-3)");
    CHECK(json_int(doc, "start_line") == 2 && json_int(doc, "end_line") == 3, doc);
    ponder_free_string(doc);
    doc = NULL;
    EXPECT(ponder_get(db, path, 3, 2, &doc, &err_), PONDER_ERR_INVALID, "get(lines 3-2)");
    EXPECT(ponder_get(db, NULL, 0, 0, &doc, &err_), PONDER_ERR_INVALID, "get(NULL path)");
    EXPECT(ponder_get(db, path, 0, 0, NULL, &err_), PONDER_ERR_INVALID, "get(NULL out)");
    snprintf(request, sizeof request, "%s/no-such-note.md", docs);
    EXPECT(ponder_get(db, request, 0, 0, &doc, &err_), PONDER_ERR_NOT_FOUND, "get(not indexed)");

    /* Four threads search one handle at once. */
    enum { THREADS = 4 };
    pthread_t tids[THREADS];
    struct searcher ss[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ss[i].db = db;
        ss[i].id = i;
        ss[i].ok = 0;
        CHECK(pthread_create(&tids[i], NULL, search_thread, &ss[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tids[i], NULL);
        CHECK(ss[i].ok, "a search thread failed");
    }

    /* Cancellation: from the callback through ponder_cancel, and by the callback's return. */
    CHECK(ponder_cancel(NULL) == PONDER_ERR_INVALID, "cancel(NULL)");
    CHECK(ponder_cancel(db) == PONDER_OK, "cancel with no job");
    ponder_engine* c = NULL;
    EXPECT(ponder_open(cancel_dir, cpu, &c, &err_), PONDER_OK, "open(cancel)");
    snprintf(request, sizeof request, "{\"paths\": [\"%s\"]}", docs);
    report = (char*)&checks;
    EXPECT(ponder_index(c, request, cancel_on_walk, c, &report, &err_), PONDER_ERR_CANCELLED, "index(ponder_cancel)");
    CHECK(report == NULL, "report set by a cancelled job");
    EXPECT(ponder_index(c, request, stop_at_once, NULL, &report, &err_), PONDER_ERR_CANCELLED, "index(callback stop)");
    /* A cancel does not outlive its job. */
    EXPECT(ponder_index(c, request, NULL, NULL, &report, &err_), PONDER_OK, "index after cancels");
    CHECK(json_int(report, "files_seen") == seen, report);
    ponder_free_string(report);
    CHECK(ponder_close(c) == PONDER_OK, "close(cancel)");

    /* Removing a note. */
    uint64_t removed = 99;
    EXPECT(ponder_remove(db, NULL, &removed, &err_), PONDER_ERR_INVALID, "remove(NULL path)");
    EXPECT(ponder_remove(db, path, &removed, &err_), PONDER_OK, "remove(sourdough)");
    CHECK(removed == 1, "removed count");
    EXPECT(ponder_remove(db, path, NULL, &err_), PONDER_OK, "remove(again, no count)");
    EXPECT(ponder_search(db, dough_query, &hits, &err_), PONDER_OK, "search after remove");
    CHECK(hits != NULL && strstr(hits, "sourdough-schedule.md") == NULL, hits);
    ponder_free_string(hits);
    EXPECT(ponder_get(db, path, 0, 0, &doc, &err_), PONDER_ERR_NOT_FOUND, "get(removed)");

    CHECK(ponder_close(db) == PONDER_OK, "close");

    printf("capi_smoke: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
