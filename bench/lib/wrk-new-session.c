/*
 * LD_PRELOAD shim for wrk (bench/tls.ts): every TLS connection wrk opens starts without a session,
 * so each one is a full handshake. Without it wrk's SSL_clear() keeps the last session and offers
 * it on reconnect: the server resumes it or not by its own ticket policy, and "new handshakes/s"
 * compares resumptions on one target with full handshakes on another.
 *
 * Counts, from the client's side, full and resumed handshakes and what each negotiated (version,
 * cipher, group, the server's signature type); prints one JSON line on stderr when wrk exits.
 * Built by the benchmark: gcc -O2 -shared -fPIC -o wrk-new-session.so wrk-new-session.c -ldl
 * (declares the few OpenSSL 3 functions it calls instead of needing the headers).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_cipher_st SSL_CIPHER;
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_session_reused(const SSL *s);
const char *SSL_get_version(const SSL *s);
const SSL_CIPHER *SSL_get_current_cipher(const SSL *s);
const char *SSL_CIPHER_standard_name(const SSL_CIPHER *c);
long SSL_ctrl(SSL *s, int cmd, long larg, void *parg);
const char *SSL_group_to_name(SSL *s, int id);
int SSL_get_peer_signature_type_nid(const SSL *s, int *pnid);
const char *OBJ_nid2sn(int n);

#define SSL_CTRL_GET_NEGOTIATED_GROUP 134
#define MAX_KINDS 8

static unsigned long full_count, resumed_count;
static char kinds[MAX_KINDS][160];
static unsigned long kind_count[MAX_KINDS];

static void note(SSL *s) {
  char k[160];
  int nid = 0;
  const char *group = SSL_group_to_name(s, (int)SSL_ctrl(s, SSL_CTRL_GET_NEGOTIATED_GROUP, 0, NULL));
  const char *sig = SSL_get_peer_signature_type_nid(s, &nid) == 1 ? OBJ_nid2sn(nid) : "none";
  snprintf(k, sizeof k, "%s %s %s %s", SSL_get_version(s), SSL_CIPHER_standard_name(SSL_get_current_cipher(s)), group ? group : "?", sig ? sig : "?");
  for (int i = 0; i < MAX_KINDS; i++) {
    if (kind_count[i] == 0) {
      strcpy(kinds[i], k);
      kind_count[i] = 1;
      return;
    }
    if (strcmp(kinds[i], k) == 0) {
      kind_count[i]++;
      return;
    }
  }
}

int SSL_connect(SSL *s) {
  static int (*real)(SSL *);
  if (real == NULL) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
  /* wrk calls SSL_connect again while the handshake is in progress: only the first call drops the session */
  if (SSL_in_before(s)) SSL_set_session(s, NULL);
  int r = real(s);
  if (r == 1) {
    if (SSL_session_reused(s)) resumed_count++;
    else full_count++;
    note(s);
  }
  return r;
}

__attribute__((destructor)) static void report(void) {
  fprintf(stderr, "{\"full\":%lu,\"resumed\":%lu,\"negotiated\":{", full_count, resumed_count);
  for (int i = 0; i < MAX_KINDS && kind_count[i] > 0; i++) fprintf(stderr, "%s\"%s\":%lu", i ? "," : "", kinds[i], kind_count[i]);
  fprintf(stderr, "}}\n");
}
