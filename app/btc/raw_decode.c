/* The raw-block path's decoder (app/btc/rawblock.py builds it with cffi): one call per block fills the
 * columns the loader writes to raw.btc_tx_raw (txid, size, weight, coinbase/segwit flags, input/output
 * counts, output sums, utxo_output_* by Core's IsUnspendable rule) and the block's spent outpoints, looping
 * over the block's transactions in C; a second call reads Core's spent outputs of the block (REST
 * /rest/spenttxouts/<hash>.bin) into each transaction's input value, for its fee.
 * The decoding is libwally-core's (wally_tx_from_bytes on each transaction where the previous one ended):
 * the wallycore wheel's extension module exports its C API, loaded with dlopen because the wheel ships no
 * C header; the prototypes below are libwally-core's documented ones. The only bytes read here are the
 * block's transaction count after its 80-byte header and the spent outputs' framing (CompactSize counts,
 * each CTxOut's 8-byte value and script length). */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

struct wally_tx;
static int (*w_from_bytes)(const unsigned char *, size_t, uint32_t, struct wally_tx **);
static int (*w_free)(struct wally_tx *);
static int (*w_length)(const struct wally_tx *, uint32_t, size_t *);
static int (*w_weight)(const struct wally_tx *, size_t *);
static int (*w_txid)(const struct wally_tx *, unsigned char *, size_t);
static int (*w_num_in)(const struct wally_tx *, size_t *);
static int (*w_num_out)(const struct wally_tx *, size_t *);
static int (*w_is_coinbase)(const struct wally_tx *, size_t *);
static int (*w_witness_count)(const struct wally_tx *, size_t *);
static int (*w_out_sat)(const struct wally_tx *, size_t, uint64_t *);
static int (*w_out_script_len)(const struct wally_tx *, size_t, size_t *);
static int (*w_out_script)(const struct wally_tx *, size_t, unsigned char *, size_t, size_t *);
static int (*w_in_txhash)(const struct wally_tx *, size_t, unsigned char *, size_t);
static int (*w_in_index)(const struct wally_tx *, size_t, size_t *);
#define WALLY_TX_FLAG_USE_WITNESS 0x1

#define SYM(lib, var, name) \
    if (!(*(void **)&var = dlsym(lib, name))) \
        return -2;

int mq_init_wally(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    int (*init)(uint32_t);
    if (!lib)
        return -1;
    SYM(lib, init, "wally_init");
    SYM(lib, w_from_bytes, "wally_tx_from_bytes");
    SYM(lib, w_free, "wally_tx_free");
    SYM(lib, w_length, "wally_tx_get_length");
    SYM(lib, w_weight, "wally_tx_get_weight");
    SYM(lib, w_txid, "wally_tx_get_txid");
    SYM(lib, w_num_in, "wally_tx_get_num_inputs");
    SYM(lib, w_num_out, "wally_tx_get_num_outputs");
    SYM(lib, w_is_coinbase, "wally_tx_is_coinbase");
    SYM(lib, w_witness_count, "wally_tx_get_witness_count");
    SYM(lib, w_out_sat, "wally_tx_get_output_satoshi");
    SYM(lib, w_out_script_len, "wally_tx_get_output_script_len");
    SYM(lib, w_out_script, "wally_tx_get_output_script");
    SYM(lib, w_in_txhash, "wally_tx_get_input_txhash");
    SYM(lib, w_in_index, "wally_tx_get_input_index");
    return init(0);
}

typedef struct {
    unsigned char *txid; /* 32 bytes per tx, in getblock's (display) byte order, as raw.btc_tx_raw stores it */
    uint32_t *size, *weight, *n_in, *n_out, *utxo_count;
    int64_t *out_value, *utxo_value, *utxo_script_bytes;
    int64_t *in_value; /* filled by mq_spent_values: the sum of the tx's spent outputs (0 for the coinbase) */
    uint8_t *coinbase, *segwit;
    unsigned char *prev_txid; /* 32 bytes per spent outpoint, internal byte order */
    uint32_t *prev_vout, *prev_tx; /* output index; index in the block of the spending tx */
    size_t max_tx, max_in, n_tx, n_spent;
} mq_columns;

#define MAX_SCRIPT_SIZE 10000 /* Core's: a longer script is unspendable */
#define OP_RETURN 0x6a

static void reverse32(unsigned char *h)
{
    for (int i = 0; i < 16; i++) {
        unsigned char t = h[i];
        h[i] = h[31 - i];
        h[31 - i] = t;
    }
}

/* A CompactSize at p (before end): its value in *n, the byte after it returned; NULL if cut short. */
static const unsigned char *compact_size(const unsigned char *p, const unsigned char *end, uint64_t *n)
{
    if (p >= end)
        return NULL;
    if (*p < 0xfd) {
        *n = *p;
        return p + 1;
    }
    if (*p == 0xfd && end - p >= 3) {
        *n = p[1] | (p[2] << 8);
        return p + 3;
    }
    if (*p == 0xfe && end - p >= 5) {
        *n = p[1] | (p[2] << 8) | (p[3] << 16) | ((uint64_t)p[4] << 24);
        return p + 5;
    }
    if (*p == 0xff && end - p >= 9) {
        *n = 0;
        for (int i = 8; i >= 1; i--)
            *n = (*n << 8) | p[i];
        return p + 9;
    }
    return NULL;
}

/* The block's transaction count (a CompactSize after the 80-byte header): where the first tx starts. */
static const unsigned char *first_tx(const unsigned char *raw, size_t len, uint64_t *n)
{
    if (len < 81)
        return NULL;
    return compact_size(raw + 80, raw + len, n);
}

static void put_outputs(mq_columns *c, size_t t, uint64_t total, uint64_t count, uint64_t value, uint64_t bytes)
{
    c->out_value[t] = total, c->utxo_count[t] = count, c->utxo_value[t] = value, c->utxo_script_bytes[t] = bytes;
}

/* libwally-core only: each tx parsed by wally_tx_from_bytes where the previous one ended. 0 or < 0. */
int mq_decode_wally(const unsigned char *raw, size_t len, mq_columns *c)
{
    unsigned char script[MAX_SCRIPT_SIZE]; /* on the stack: callers may decode in several threads */
    const unsigned char *end = raw + len, *p;
    uint64_t n;
    c->n_tx = c->n_spent = 0;
    if (!(p = first_tx(raw, len, &n)))
        return -1;
    if (n > c->max_tx)
        return -3;
    for (size_t t = 0; t < n; t++) {
        struct wally_tx *tx;
        size_t size, weight, nin, nout, cb, wc, slen, written, idx;
        uint64_t sat, total = 0, utxo_value = 0, utxo_bytes = 0, utxo_count = 0;
        if (w_from_bytes(p, end - p, 0, &tx))
            return -1;
        if (w_length(tx, WALLY_TX_FLAG_USE_WITNESS, &size) || w_weight(tx, &weight) || w_num_in(tx, &nin)
            || w_num_out(tx, &nout) || w_is_coinbase(tx, &cb) || w_witness_count(tx, &wc)
            || w_txid(tx, c->txid + 32 * t, 32) || (!cb && c->n_spent + nin > c->max_in)) {
            w_free(tx);
            return -1;
        }
        reverse32(c->txid + 32 * t);
        for (size_t o = 0; o < nout; o++) {
            w_out_sat(tx, o, &sat);
            w_out_script_len(tx, o, &slen);
            total += sat;
            if (slen > MAX_SCRIPT_SIZE)
                continue;
            if (slen) {
                w_out_script(tx, o, script, sizeof script, &written);
                if (script[0] == OP_RETURN)
                    continue;
            }
            utxo_count++, utxo_value += sat, utxo_bytes += slen;
        }
        for (size_t i = 0; !cb && i < nin; i++, c->n_spent++) {
            w_in_txhash(tx, i, c->prev_txid + 32 * c->n_spent, 32);
            w_in_index(tx, i, &idx);
            c->prev_vout[c->n_spent] = (uint32_t)idx, c->prev_tx[c->n_spent] = (uint32_t)t;
        }
        c->size[t] = size, c->weight[t] = weight, c->n_in[t] = nin, c->n_out[t] = nout;
        c->coinbase[t] = cb, c->segwit[t] = wc > 0;
        put_outputs(c, t, total, utxo_count, utxo_value, utxo_bytes);
        w_free(tx);
        p += size;
    }
    c->n_tx = n;
    return p == end ? 0 : -1;
}


/* Core's spent outputs of the block just decoded (REST spenttxouts .bin, from its undo data): a CompactSize
 * count of transactions, then per transaction a CompactSize count of its spent outputs and each CTxOut
 * (int64 value, CompactSize script length, script). Fills in_value per transaction; every count must match
 * the block's (the coinbase spends nothing). 0, or < 0 naming the first mismatch's kind. */
int mq_spent_values(const unsigned char *spent, size_t len, mq_columns *c)
{
    const unsigned char *p = spent, *end = spent + len;
    uint64_t n_tx, n, script_len;
    if (!(p = compact_size(p, end, &n_tx)) || n_tx != c->n_tx)
        return -4;
    for (size_t t = 0; t < n_tx; t++) {
        int64_t sum = 0;
        if (!(p = compact_size(p, end, &n)) || n != (c->coinbase[t] ? 0 : c->n_in[t]))
            return -5;
        for (uint64_t i = 0; i < n; i++) {
            int64_t value;
            if (end - p < 8)
                return -6;
            memcpy(&value, p, 8); /* little-endian, as on every platform MQNODE runs on */
            if (value < 0 || !(p = compact_size(p + 8, end, &script_len)) || (uint64_t)(end - p) < script_len)
                return -6;
            sum += value, p += script_len;
        }
        c->in_value[t] = sum;
    }
    return p == end ? 0 : -7;
}
