/* SPDX-License-Identifier: MIT */
/* inode.h: what an inode number means, in one place. Numbers carry their own
 * meaning, so no inode table is kept:
 *   1                    the root          2  /.stats
 *   0x10000 + region     a region          0x20000 + region  <region>/.by-name
 *   2^40 + (gen << 8) + region   <region>.json, one inode per snapshot
 *   bit 63 | slot << 34 | generation << 18 | node   a node of an image
 * Node NODE_JSON is <no>.json and NODE_LINK the image's .by-name link; a tree
 * never has that many nodes, a slot never reaches SLOT_MAX and there are never
 * more than MAX_REGIONS regions, which the assertions below hold to. */
#ifndef INODE_H
#define INODE_H

#include <stdint.h>

#include "tree.h"

#define INO_ROOT 1ull
#define INO_STATS 2ull
#define INO_REGION 0x10000ull
#define INO_BYNAME 0x20000ull
#define INO_REGJSON (1ull << 40)
#define REGJSON_GEN_BITS 32
#define INO_IMAGE (1ull << 63)

#define MAX_REGIONS 256u
#define NODE_BITS 18
#define GEN_BITS 16
#define SLOT_BITS (63 - GEN_BITS - NODE_BITS)
#define SLOT_MAX (1u << SLOT_BITS) /* slots are numbered 0 .. SLOT_MAX - 1 */
#define NODE_JSON ((1u << NODE_BITS) - 1)
#define NODE_LINK ((1u << NODE_BITS) - 2)

_Static_assert(SLOT_BITS + GEN_BITS + NODE_BITS == 63, "image inodes use bits 0-62");
_Static_assert(TREE_MAX_NODES <= NODE_LINK, "a tree's last node would be a reserved node");
_Static_assert(INO_STATS < INO_REGION, "/.stats is below the regions");
_Static_assert(INO_REGION + MAX_REGIONS <= INO_BYNAME, "regions and .by-name overlap");
_Static_assert(INO_BYNAME + MAX_REGIONS <= INO_REGJSON, ".by-name and <region>.json overlap");
_Static_assert(MAX_REGIONS <= 256, "<region>.json keeps the region in 8 bits");
_Static_assert(INO_REGJSON + (1ull << (8 + REGJSON_GEN_BITS)) <= INO_IMAGE,
	       "<region>.json and images overlap");
_Static_assert(SLOT_MAX - 1 <= UINT32_MAX, "slots are 32-bit");

/* What an inode number names. */
enum ino_kind {
	INO_K_ROOT,
	INO_K_STATS,
	INO_K_REGION,  /* id: the region */
	INO_K_BYNAME,  /* id: the region */
	INO_K_REGJSON, /* id: the region, doc: the snapshot's generation */
	INO_K_NODE,    /* slot, gen, node: a node of an image's tree */
	INO_K_JSON,    /* slot, gen: <no>.json */
	INO_K_LINK,    /* slot, gen: a .by-name link */
	INO_K_NONE,    /* no such inode */
};

struct ino_parts {
	enum ino_kind kind;
	uint32_t id; /* region, for REGION and BYNAME */
	uint32_t slot;
	uint16_t gen;
	uint32_t node;
	uint32_t doc; /* REGJSON: the snapshot's generation */
};

static inline uint64_t ino_region(uint32_t region)
{
	return INO_REGION + region;
}

static inline uint64_t ino_byname(uint32_t region)
{
	return INO_BYNAME + region;
}

static inline uint64_t ino_regjson(uint32_t region, uint32_t gen)
{
	return INO_REGJSON + ((uint64_t)gen << 8) + region;
}

static inline uint64_t ino_image(uint32_t slot, uint16_t gen, uint32_t node)
{
	return INO_IMAGE | (uint64_t)slot << (GEN_BITS + NODE_BITS) | (uint64_t)gen << NODE_BITS |
	       node;
}

/* Classifies ino, the one place that reads an inode number. */
static inline struct ino_parts ino_split(uint64_t ino)
{
	struct ino_parts p = { INO_K_NONE, 0, 0, 0, 0, 0 };

	if (ino & INO_IMAGE) {
		p.slot = (uint32_t)((ino & ~INO_IMAGE) >> (GEN_BITS + NODE_BITS));
		p.gen = (uint16_t)(ino >> NODE_BITS);
		p.node = (uint32_t)(ino & NODE_JSON);
		p.kind = p.node == NODE_JSON   ? INO_K_JSON
			 : p.node == NODE_LINK ? INO_K_LINK
					       : INO_K_NODE;
	} else if (ino == INO_ROOT) {
		p.kind = INO_K_ROOT;
	} else if (ino == INO_STATS) {
		p.kind = INO_K_STATS;
	} else if (ino >= INO_REGION && ino < INO_REGION + MAX_REGIONS) {
		p.kind = INO_K_REGION;
		p.id = (uint32_t)(ino - INO_REGION);
	} else if (ino >= INO_BYNAME && ino < INO_BYNAME + MAX_REGIONS) {
		p.kind = INO_K_BYNAME;
		p.id = (uint32_t)(ino - INO_BYNAME);
	} else if (ino >= INO_REGJSON && ino < INO_REGJSON + (1ull << (8 + REGJSON_GEN_BITS)) &&
		   (ino & 0xff) < MAX_REGIONS) {
		p.kind = INO_K_REGJSON;
		p.id = (uint32_t)(ino & 0xff);
		p.doc = (uint32_t)((ino - INO_REGJSON) >> 8);
	}
	return p;
}

#endif
