/*
 * compat.h: the server API calls whose signature differs between the
 * PostgreSQL majors presence builds against (15 to 19), in one place.
 *
 * The call sites use the shims below; each shim says which major changed
 * what, with the prototype from that major's headers.
 */
#ifndef PRESENCE_COMPAT_H
#define PRESENCE_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "utils/relcache.h"
#if PG_VERSION_NUM >= 190000
#include "access/tableam.h"		/* SO_NONE */
#endif

/*
 * index_beginscan(), a plain index scan without instrumentation.
 *
 *   15-17: index_beginscan(Relation heapRelation, Relation indexRelation,
 *                          Snapshot snapshot, int nkeys, int norderbys)
 *   18:    ... Snapshot snapshot, IndexScanInstrumentation *instrument,
 *                          int nkeys, int norderbys)
 *   19:    ... IndexScanInstrumentation *instrument, int nkeys, int norderbys,
 *                          uint32 flags)              (ScanOptions, SO_NONE)
 */
#if PG_VERSION_NUM >= 190000
#define presence_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys), SO_NONE)
#elif PG_VERSION_NUM >= 180000
#define presence_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define presence_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * The OID of a table's primary key index.
 *
 *   15-17: Oid RelationGetPrimaryKeyIndex(Relation relation)
 *   18-19: Oid RelationGetPrimaryKeyIndex(Relation relation, bool deferrable_ok)
 *
 * deferrable_ok = false: a deferrable primary key would not do for a
 * unique probe (the extension's are never deferrable).
 */
#if PG_VERSION_NUM >= 180000
#define presence_primary_key_index(rel) RelationGetPrimaryKeyIndex((rel), false)
#else
#define presence_primary_key_index(rel) RelationGetPrimaryKeyIndex(rel)
#endif

#endif							/* PRESENCE_COMPAT_H */
