/* SPDX-License-Identifier: MIT */
/* tree.c: the JSON-to-tree mapping. An image is flattened breadth-first into
 * one block: a node array followed by a pool of NUL-terminated strings
 * (names, values, codeNames). Strings that repeat across images (keys,
 * codes, code names, short values) are kept once for all trees instead
 * (see "shared strings"). 16 bytes a node plus the text only this image
 * has, so a typical image costs well under its raw JSON. */
#include "tree.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a node was in the JSON, so tree_to_json can give it back. */
enum jtype {
	J_STRING,
	J_INT,
	J_REAL,
	J_TRUE,
	J_FALSE,
	J_NULL,
	J_CODE,	 /* its value is "code\0codeName" */
	J_CODE0, /* a code whose codeName is null: its value is "code" */
	J_OBJECT,
	J_ARRAY
};

/* A string of a tree: a pool offset, or with REF_SHARED a shared string. */
#define REF_SHARED 0x80000000u
#define TB_TYPE_SHIFT 28 /* tb: enum jtype above, the b below */
#define TB_B_MASK ((1u << TB_TYPE_SHIFT) - 1)

struct tnode {
	uint32_t name; /* a string ref */
	uint32_t a;    /* file: value ref;   dir: first child */
	uint32_t tb;   /* type << TB_TYPE_SHIFT | b, b being
			  file: value length (of the code, for a code);
			  dir: number of children */
};

struct tree {
	atomic_uint refs;
	uint32_t count;
	uint32_t pool_len;
	int has_date;
	int64_t date;		 /* createDate, parsed once */
	atomic_size_t json_size; /* of tree_json_text, once asked for; 0: not yet */
	struct tnode nodes[];	 /* count of them, then the pool (pool_of) */
};

/* The tree's own strings, after its nodes in the same block. */
static char *pool_of(const struct tree *t)
{
	return (char *)(t->nodes + t->count);
}

static enum jtype node_type(const struct tnode *n)
{
	return (enum jtype)(n->tb >> TB_TYPE_SHIFT);
}

static uint32_t node_b(const struct tnode *n)
{
	return n->tb & TB_B_MASK;
}

/* ---- shared strings ----
 *
 * One table for the process: append-only text in chunks that never move, an
 * index of chunks of pointers (an id names a string for good), and a hash
 * set of ids, all under one mutex while adding or finding. A tree keeps the
 * id. Reading an id's text needs no lock: the id was found or added under
 * the mutex before the tree holding it was made, and trees reach other
 * threads through the cache's lock. Bounded: once SHARED_MAX strings or
 * SHARED_BYTES of text are held (hostile answers full of distinct values),
 * new strings stay in their tree's pool; nothing is ever freed, so equal
 * content always gets the same representation. */
#define SHARED_LEN 128		/* longer strings are not shared (less than 256) */
#define SHARED_MAX (1u << 18)	/* strings */
#define SHARED_BYTES (8u << 20) /* of text */
#define SHARED_CHUNK 65536u	/* text chunk */
#define SHARED_IDS 4096u	/* ids per index chunk */
#define TREE_SHARE_NEW 1024u	/* strings one tree may add */

static struct {
	pthread_mutex_t lock;
	const char **index[SHARED_MAX / SHARED_IDS];
	char *text;	     /* the current text chunk */
	size_t text_used;    /* in it */
	size_t bytes;	     /* of text chunks made */
	uint32_t n;	     /* strings */
	uint32_t *hash, cap; /* id + 1, 0 = empty */
} shared = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint32_t str_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* A shared string: len bytes (NULs inside allowed: a code and its name),
 * then a NUL; its length is the byte before it. */
static const char *shared_str(uint32_t id)
{
	return shared.index[id / SHARED_IDS][id % SHARED_IDS];
}

static size_t shared_len(const char *str)
{
	return (unsigned char)str[-1];
}

/* With shared.lock held: the hash grown to hold one more id; -1 if no memory. */
static int shared_grow(void)
{
	uint32_t cap = shared.cap ? shared.cap * 2 : 4096, *hash;

	if ((shared.n + 1) * 2 <= shared.cap)
		return 0;
	hash = calloc(cap, sizeof(*hash));
	if (!hash)
		return -1;
	for (uint32_t i = 0; i < shared.cap; i++) {
		const char *k;
		uint32_t j;

		if (!shared.hash[i])
			continue;
		k = shared_str(shared.hash[i] - 1);
		for (j = str_hash(k, shared_len(k)) & (cap - 1); hash[j]; j = (j + 1) & (cap - 1))
			;
		hash[j] = shared.hash[i];
	}
	free(shared.hash);
	shared.hash = hash;
	shared.cap = cap;
	return 0;
}

/* The shared id of the len bytes at s: 0 and *id if it is shared already;
 * if not, and add is set and there is room, 1 and *id of the string added;
 * else -1. */
static int shared_id(const char *s, size_t len, int add, uint32_t *id)
{
	uint32_t h = str_hash(s, len), j;
	int found = -1;

	if (len > SHARED_LEN)
		return -1;
	pthread_mutex_lock(&shared.lock);
	for (j = shared.cap ? h & (shared.cap - 1) : 0; shared.cap && shared.hash[j];
	     j = (j + 1) & (shared.cap - 1)) {
		const char *k = shared_str(shared.hash[j] - 1);

		if (shared_len(k) == len && memcmp(k, s, len) == 0) {
			*id = shared.hash[j] - 1;
			found = 0;
			goto out;
		}
	}
	if (!add || shared.n == SHARED_MAX || shared_grow() < 0)
		goto out;
	if (!shared.text || shared.text_used + len + 2 > SHARED_CHUNK) {
		char *chunk;

		if (shared.bytes + SHARED_CHUNK > SHARED_BYTES || !(chunk = malloc(SHARED_CHUNK)))
			goto out;
		shared.text = chunk;
		shared.text_used = 0;
		shared.bytes += SHARED_CHUNK;
	}
	if (!shared.index[shared.n / SHARED_IDS] &&
	    !(shared.index[shared.n / SHARED_IDS] = malloc(SHARED_IDS * sizeof(char *))))
		goto out;
	shared.text[shared.text_used] = (char)len;
	memcpy(shared.text + shared.text_used + 1, s, len);
	shared.text[shared.text_used + 1 + len] = '\0';
	shared.index[shared.n / SHARED_IDS][shared.n % SHARED_IDS] =
		shared.text + shared.text_used + 1;
	shared.text_used += len + 2;
	for (j = h & (shared.cap - 1); shared.hash[j]; j = (j + 1) & (shared.cap - 1))
		;
	shared.hash[j] = shared.n + 1;
	*id = shared.n++;
	found = 1;
out:
	pthread_mutex_unlock(&shared.lock);
	return found;
}

/* The text of a string ref of t. */
static const char *str_at(const struct tree *t, uint32_t ref)
{
	return ref & REF_SHARED ? shared_str(ref & ~REF_SHARED) : pool_of(t) + ref;
}

static int valid_name(const char *k)
{
	size_t n = strlen(k);

	return n > 0 && n <= 255 && strcmp(k, ".") != 0 && strcmp(k, "..") != 0 && !strchr(k, '/');
}

/* A common code: code and codeName are the only keys that can be file names.
 * Keys that cannot are left out first, so that tree_to_json's {code,
 * codeName} is read back as the same code. */
static int is_code(json_t *v)
{
	json_t *code, *name, *x;
	const char *k;
	size_t n = 0;

	if (!json_is_object(v))
		return 0;
	json_object_foreach(v, k, x)
	{
		n += valid_name(k);
	}
	code = json_object_get(v, "code");
	name = json_object_get(v, "codeName");
	return n == 2 && json_is_string(code) && (json_is_string(name) || json_is_null(name));
}

static int is_dir(json_t *v)
{
	return (json_is_object(v) && !is_code(v)) || json_is_array(v);
}

/* A real as the API most likely printed it: the fewest significant digits
 * that read back as the same double, in plain notation unless the exponent
 * is far out (as Python's and JavaScript's printers do): 100.0, 0.1, 1e-07. */
static void format_real(double d, char *buf, size_t len)
{
	int prec, exp;

	for (prec = 1; prec <= 17; prec++) { /* 17 digits always read back */
		snprintf(buf, len, "%.*e", prec - 1, d);
		if (prec == 17 || strtod(buf, NULL) == d)
			break;
	}
	exp = (int)strtol(strchr(buf, 'e') + 1, NULL, 10); /* our own %e output */
	if (exp < -4 || exp >= 16)
		return;
	snprintf(buf, len, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, d);
	if (!strchr(buf, '.') && strlen(buf) + 2 < len)
		strncat(buf, ".0", len - strlen(buf) - 1); /* keep it a real in JSON */
}

/* The text a file holds (without its newline); buf is scratch for numbers. */
static const char *scalar_text(json_t *v, char *buf, size_t len)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_value(v);
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	case JSON_REAL:
		format_real(json_real_value(v), buf, len);
		return buf;
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_OBJECT: /* a common code */
		return json_string_value(json_object_get(v, "code"));
	default:
		return "";
	}
}

struct sizing {
	size_t nodes;
	size_t pool;
	unsigned skipped;
};

/* Whether a value is worth sharing: one that repeats across images, so
 * not one that names or numbers this image (serverImageNo, names, dates,
 * instance numbers): values with no digit, and the shortest. Keys and
 * common codes are always worth it. */
static int shareable(const char *s)
{
	return strlen(s) <= 3 || !strpbrk(s, "0123456789");
}

/* What a file node holds: its text (for a common code, "code\0codeName"),
 * its length, and whether to share it. buf is scratch. */
struct value {
	const char *text; /* the code alone when the pair is too long to share */
	const char *name; /* a code's codeName, or NULL */
	size_t len;	  /* of the whole (code, NUL, codeName) */
	size_t code_len;  /* of the value, or of the code */
	int share;
};

static struct value value_of(json_t *v, char *buf, size_t buflen)
{
	struct value x = { scalar_text(v, buf, buflen), NULL, 0, 0, 0 };
	json_t *name = json_object_get(v, "codeName");

	x.len = x.code_len = strlen(x.text);
	x.share = json_is_object(v) || shareable(x.text);
	if (json_is_object(v) && json_is_string(name)) {
		size_t n = strlen(json_string_value(name));

		x.name = json_string_value(name);
		if (x.len + 1 + n < buflen) {
			memmove(buf, x.text, x.len + 1);
			memcpy(buf + x.len + 1, x.name, n + 1);
			x.text = buf;
		} else {
			x.share = 0; /* too long to share: pooled in two parts */
		}
		x.len += 1 + n;
	}
	return x;
}

/* Pool bytes for len bytes at s and a NUL: none when they are a shared
 * string already. Sizing adds nothing to the table (an answer refused for
 * its size must not fill it); strings are only ever added, so what is
 * shared here is shared when filling too, and the pool may only shrink. */
static size_t pool_need(const char *s, size_t len, int share)
{
	uint32_t id;

	return share && shared_id(s, len, 0, &id) == 0 ? 0 : len + 1;
}

static void size_name_value(struct sizing *s, const char *name, json_t *v)
{
	char buf[2 * SHARED_LEN + 2];
	struct value x;

	s->nodes++;
	s->pool += pool_need(name, strlen(name), 1);
	if (is_dir(v))
		return;
	x = value_of(v, buf, sizeof(buf));
	s->pool += pool_need(x.text, x.len, x.share);
	if (json_is_object(v)) /* a common code: its unusable keys are left out */
		s->skipped += (unsigned)json_object_size(v) - 2;
}

/* First pass: counts nodes and pool bytes, checks depth and names. */
static int size_dir(struct sizing *s, json_t *dir, int depth)
{
	char idx[24];

	if (depth > TREE_MAX_DEPTH)
		return -1;
	if (json_is_object(dir)) {
		const char *k;
		json_t *v;

		json_object_foreach(dir, k, v)
		{
			if (!valid_name(k)) {
				s->skipped++;
				continue;
			}
			size_name_value(s, k, v);
			if (is_dir(v) && size_dir(s, v, depth + 1) < 0)
				return -1;
		}
	} else {
		size_t i;
		json_t *v;

		json_array_foreach(dir, i, v)
		{
			snprintf(idx, sizeof(idx), "%zu", i);
			size_name_value(s, idx, v);
			if (is_dir(v) && size_dir(s, v, depth + 1) < 0)
				return -1;
		}
	}
	return 0;
}

struct filler {
	struct tree *t;
	json_t **src;	/* the JSON each node came from, by node number */
	uint32_t next;	/* next free node */
	uint32_t pool;	/* next free pool byte */
	unsigned added; /* strings this tree added to the shared table */
};

/* A ref to the len bytes at s: shared (if share), or copied into the pool
 * with a NUL. One tree adds at most TREE_SHARE_NEW strings to the table (a
 * real image has a few hundred keys and codes), so that no single answer,
 * however odd, fills it for everyone after. */
static uint32_t put_string(struct filler *f, const char *s, size_t len, int share)
{
	uint32_t at = f->pool, id;
	int r = share ? shared_id(s, len, f->added < TREE_SHARE_NEW, &id) : -1;

	if (r >= 0) {
		f->added += (unsigned)r;
		return id | REF_SHARED;
	}
	memcpy(pool_of(f->t) + at, s, len);
	pool_of(f->t)[at + len] = '\0';
	f->pool += (uint32_t)len + 1;
	return at;
}

static enum jtype jtype_of(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return !is_code(v)					? J_OBJECT
		       : json_is_string(json_object_get(v, "codeName")) ? J_CODE
									: J_CODE0;
	case JSON_ARRAY:
		return J_ARRAY;
	case JSON_STRING:
		return J_STRING;
	case JSON_INTEGER:
		return J_INT;
	case JSON_REAL:
		return J_REAL;
	case JSON_TRUE:
		return J_TRUE;
	case JSON_FALSE:
		return J_FALSE;
	default:
		return J_NULL;
	}
}

static void add_child(struct filler *f, const char *name, json_t *v)
{
	struct tnode *n = &f->t->nodes[f->next];
	char buf[2 * SHARED_LEN + 2];
	struct value x;

	f->src[f->next++] = v;
	n->name = put_string(f, name, strlen(name), 1);
	n->tb = (uint32_t)jtype_of(v) << TB_TYPE_SHIFT;
	if (is_dir(v))
		return; /* a and b are set when the directory's turn comes */
	x = value_of(v, buf, sizeof(buf));
	n->tb |= (uint32_t)x.code_len;
	if (x.text == buf || !x.name) {
		n->a = put_string(f, x.text, x.len, x.share);
	} else { /* code and codeName, too long to share: one after the other */
		n->a = put_string(f, x.text, x.code_len, 0);
		put_string(f, x.name, x.len - x.code_len - 1, 0);
	}
}

/* Second pass, breadth-first: gives directory d its contiguous children. */
static void fill_dir(struct filler *f, uint32_t d)
{
	struct tnode *n = &f->t->nodes[d];
	json_t *dir = f->src[d];
	uint32_t first = f->next;

	if (json_is_object(dir)) {
		const char *k;
		json_t *v;

		json_object_foreach(dir, k, v)
		{
			if (valid_name(k))
				add_child(f, k, v);
		}
	} else {
		char idx[24];
		size_t i;
		json_t *v;

		json_array_foreach(dir, i, v)
		{
			snprintf(idx, sizeof(idx), "%zu", i);
			add_child(f, idx, v);
		}
	}
	n->a = first;
	n->tb |= f->next - first;
}

struct tree *tree_build(json_t *image, unsigned *skipped, char *errbuf, size_t errlen)
{
	struct sizing s = { 1, 1, 0 };
	struct filler f = { 0 };
	struct tree *t = NULL;
	size_t bytes;

	if (!json_is_object(image)) {
		snprintf(errbuf, errlen, "image is not a JSON object");
		return NULL;
	}
	if (size_dir(&s, image, 1) < 0) {
		snprintf(errbuf, errlen, "JSON nested deeper than %d levels", TREE_MAX_DEPTH);
		return NULL;
	}
	if (s.nodes > TREE_MAX_NODES || s.pool > UINT32_MAX / 2) {
		snprintf(errbuf, errlen, "image too large (%zu nodes)", s.nodes);
		return NULL;
	}
	bytes = sizeof(*t) + s.nodes * sizeof(struct tnode) + s.pool;
	t = calloc(1, bytes);
	f.src = calloc(s.nodes, sizeof(*f.src));
	if (!t || !f.src) {
		snprintf(errbuf, errlen, "out of memory");
		free(t);
		t = NULL;
		goto out;
	}
	atomic_init(&t->refs, 1);
	atomic_init(&t->json_size, 0);
	t->count = (uint32_t)s.nodes;
	f.t = t;
	f.next = 1;
	f.pool = 1; /* offset 0 is the empty name of the root */
	f.src[0] = image;
	t->nodes[0].tb = (uint32_t)J_OBJECT << TB_TYPE_SHIFT;
	for (uint32_t i = 0; i < f.next; i++) {
		if (node_type(&t->nodes[i]) == J_OBJECT || node_type(&t->nodes[i]) == J_ARRAY)
			fill_dir(&f, i);
	}
	/* what strings were shared is known now: the pool may be shorter than
	 * sized, never longer (strings are only ever added); give the rest back */
	t->pool_len = f.pool;
	if (t->pool_len < s.pool) {
		struct tree *shorter = realloc(t, tree_bytes(t));

		if (shorter)
			t = shorter;
	}
	if (skipped)
		*skipped = s.skipped;
	{
		uint32_t n;

		t->has_date = tree_lookup(t, 0, "createDate", &n) == 0 &&
			      node_type(&t->nodes[n]) == J_STRING &&
			      tree_parse_date(tree_value(t, n), &t->date) == 0;
	}
out:
	free(f.src);
	return t;
}

struct tree *tree_ref(struct tree *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void tree_unref(struct tree *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		free(t);
}

uint32_t tree_count(const struct tree *t)
{
	return t->count;
}

size_t tree_bytes(const struct tree *t)
{
	return sizeof(*t) + t->count * sizeof(struct tnode) + t->pool_len;
}

int tree_equal(const struct tree *a, const struct tree *b)
{
	if (a->count != b->count || a->pool_len != b->pool_len)
		return 0;
	for (uint32_t i = 0; i < a->count; i++) {
		const struct tnode *x = &a->nodes[i], *y = &b->nodes[i];

		if (x->name != y->name || x->a != y->a || x->tb != y->tb)
			return 0;
	}
	return memcmp(pool_of(a), pool_of(b), a->pool_len) == 0;
}

static int node_is_dir(const struct tnode *n)
{
	return node_type(n) == J_OBJECT || node_type(n) == J_ARRAY;
}

enum tree_kind tree_kind(const struct tree *t, uint32_t node)
{
	return node_is_dir(&t->nodes[node]) ? TREE_DIR : TREE_FILE;
}

const char *tree_name(const struct tree *t, uint32_t node)
{
	return str_at(t, t->nodes[node].name);
}

uint32_t tree_nchildren(const struct tree *t, uint32_t dir)
{
	return node_is_dir(&t->nodes[dir]) ? node_b(&t->nodes[dir]) : 0;
}

uint32_t tree_nsubdirs(const struct tree *t, uint32_t dir)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < tree_nchildren(t, dir); i++)
		n += node_is_dir(&t->nodes[t->nodes[dir].a + i]);
	return n;
}

uint32_t tree_child(const struct tree *t, uint32_t dir, uint32_t i)
{
	return t->nodes[dir].a + i;
}

int tree_lookup(const struct tree *t, uint32_t dir, const char *name, uint32_t *child)
{
	const struct tnode *d = &t->nodes[dir];

	if (!node_is_dir(d))
		return -1;
	if (node_type(d) == J_ARRAY) {
		/* Entries are "0".."n-1" in canonical form: no sign, no leading 0. */
		char *end;
		unsigned long i;

		if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1]))
			return -1;
		i = strtoul(name, &end, 10);
		if (*end || i >= node_b(d))
			return -1;
		*child = d->a + (uint32_t)i;
		return 0;
	}
	for (uint32_t i = d->a; i < d->a + node_b(d); i++) {
		if (strcmp(str_at(t, t->nodes[i].name), name) == 0) {
			*child = i;
			return 0;
		}
	}
	return -1;
}

size_t tree_size(const struct tree *t, uint32_t file)
{
	const struct tnode *n = &t->nodes[file];

	if (node_is_dir(n) || node_type(n) == J_NULL)
		return 0;
	return (size_t)node_b(n) + 1;
}

const char *tree_value(const struct tree *t, uint32_t file)
{
	return node_is_dir(&t->nodes[file]) ? "" : str_at(t, t->nodes[file].a);
}

size_t tree_read(const struct tree *t, uint32_t file, size_t off, char *buf, size_t len)
{
	size_t size = tree_size(t, file), n, vlen;

	if (off >= size)
		return 0;
	n = size - off < len ? size - off : len;
	vlen = size - 1; /* the value; the newline follows it */
	if (off < vlen)
		memcpy(buf, str_at(t, t->nodes[file].a) + off, n < vlen - off ? n : vlen - off);
	if (off + n == size)
		buf[n - 1] = '\n';
	return n;
}

const char *tree_codename(const struct tree *t, uint32_t file)
{
	const struct tnode *n = &t->nodes[file];

	return node_type(n) == J_CODE ? str_at(t, n->a) + node_b(n) + 1 : NULL;
}

static json_t *node_to_json(const struct tree *t, uint32_t i)
{
	const struct tnode *n = &t->nodes[i];
	const char *v = node_is_dir(n) ? "" : str_at(t, n->a);
	json_t *j;

	switch (node_type(n)) {
	case J_OBJECT:
	case J_ARRAY:
		j = node_type(n) == J_OBJECT ? json_object() : json_array();
		for (uint32_t c = n->a; j && c < n->a + node_b(n); c++) {
			json_t *cj = node_to_json(t, c);
			int rc = !cj ? -1
				 : node_type(n) == J_OBJECT
					 ? json_object_set_new(j, str_at(t, t->nodes[c].name), cj)
					 : json_array_append_new(j, cj);

			/* all or nothing: a part left out would read as another
			 * image (and its size be kept) */
			if (rc < 0) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case J_CODE:
	case J_CODE0:
		return json_pack("{s:s, s:o}", "code", v, "codeName",
				 node_type(n) == J_CODE0 ? json_null()
							 : json_string(v + node_b(n) + 1));
	case J_STRING:
		return json_string(v);
	case J_INT:
		return json_integer(strtoll(v, NULL, 10));
	case J_REAL:
		return json_real(strtod(v, NULL));
	case J_TRUE:
		return json_true();
	case J_FALSE:
		return json_false();
	default:
		return json_null();
	}
}

json_t *tree_to_json(const struct tree *t)
{
	return node_to_json(t, 0);
}

#define JSON_FLAGS JSON_INDENT(2)

char *tree_json_text(struct tree *t, size_t *len)
{
	json_t *j = tree_to_json(t);
	size_t n = j ? json_dumpb(j, NULL, 0, JSON_FLAGS) : 0;
	char *buf = n ? malloc(n + 1) : NULL;

	if (buf && json_dumpb(j, buf, n, JSON_FLAGS) != n) {
		free(buf); /* out of memory while writing it */
		buf = NULL;
	}
	if (buf) {
		buf[n] = '\n';
		*len = n + 1;
		atomic_store(&t->json_size, n + 1);
	}
	json_decref(j);
	return buf;
}

size_t tree_json_size(struct tree *t)
{
	size_t len = atomic_load(&t->json_size);

	if (len == 0)
		free(tree_json_text(t, &len)); /* stores the size; 0 if out of memory */
	return len;
}

int tree_parse_date(const char *s, int64_t *when)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0;
	char sign;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
		return -1;
	s += n;
	if (*s == 'Z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++;
		if (sscanf(s, "%2d%n", &oh, &n) != 1 || n != 2)
			return -1;
		s += 2;
		if (*s == ':')
			s++;
		if (sscanf(s, "%2d%n", &om, &n) != 1 || n != 2)
			return -1;
		s += 2;
		if (sign == '-') {
			oh = -oh;
			om = -om;
		}
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*when = (int64_t)timegm(&tm) - (oh * 3600 + om * 60);
	return 0;
}

int tree_create_date(const struct tree *t, int64_t *when)
{
	if (!t->has_date)
		return -1;
	*when = t->date;
	return 0;
}
