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
#include "access/tableam.h"
#include "executor/executor.h"
#include "utils/guc.h"
#include "utils/relcache.h"

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

/*
 * table_tuple_update() and table_tuple_delete(): what an update says of
 * the indexes, and the calls.
 *
 *   15:    table_tuple_update(rel, otid, slot, cid, snapshot, crosscheck,
 *                             wait, tmfd, lockmode, bool *update_indexes)
 *          table_tuple_delete(rel, tid, cid, snapshot, crosscheck, wait,
 *                             tmfd, bool changingPart)
 *   16-18: ... TU_UpdateIndexes *update_indexes) (TU_None, TU_All,
 *                             TU_Summarizing)
 *   19:    table_tuple_update(rel, otid, slot, cid, uint32 options,
 *                             snapshot, ...); table_tuple_delete(rel, tid,
 *                             cid, uint32 options, snapshot, crosscheck,
 *                             wait, tmfd)
 */
#if PG_VERSION_NUM >= 160000
typedef TU_UpdateIndexes PresenceUpdateIndexes;
#define PRESENCE_UPDATE_INDEXES_ANY(u) ((u) != TU_None)
#define PRESENCE_UPDATE_INDEXES_ONLY_SUMMARIZING(u) ((u) == TU_Summarizing)
#else
typedef bool PresenceUpdateIndexes;
#define PRESENCE_UPDATE_INDEXES_ANY(u) (u)
#define PRESENCE_UPDATE_INDEXES_ONLY_SUMMARIZING(u) false
#endif

#if PG_VERSION_NUM >= 190000
#define presence_tuple_update(rel, tid, slot, cid, snapshot, tmfd, lockmode, update_indexes) \
	table_tuple_update((rel), (tid), (slot), (cid), 0, (snapshot), \
					   InvalidSnapshot, true, (tmfd), (lockmode), (update_indexes))
#define presence_tuple_delete(rel, tid, cid, snapshot, tmfd) \
	table_tuple_delete((rel), (tid), (cid), 0, (snapshot), InvalidSnapshot, \
					   true, (tmfd))
#else
#define presence_tuple_update(rel, tid, slot, cid, snapshot, tmfd, lockmode, update_indexes) \
	table_tuple_update((rel), (tid), (slot), (cid), (snapshot), \
					   InvalidSnapshot, true, (tmfd), (lockmode), (update_indexes))
#define presence_tuple_delete(rel, tid, cid, snapshot, tmfd) \
	table_tuple_delete((rel), (tid), (cid), (snapshot), InvalidSnapshot, \
					   true, (tmfd), false)
#endif

/*
 * ExecInsertIndexTuples(): index a new row version; with no_dup_err, a
 * speculative insertion's, reporting a conflict in the arbiter indexes
 * through *conflict instead of raising unique_violation.
 *
 *   15:    (resultRelInfo, slot, estate, bool update, bool noDupErr,
 *           bool *specConflict, List *arbiterIndexes)
 *   16-18: ... List *arbiterIndexes, bool onlySummarizing)
 *   19:    (resultRelInfo, estate, uint32 flags (EIIT_IS_UPDATE,
 *           EIIT_NO_DUPE_ERROR, EIIT_ONLY_SUMMARIZING), slot,
 *           arbiterIndexes, specConflict)
 *
 * update = false: no "index unchanged" hint, which needs the updated
 * columns of a range table entry there is none of.
 */
#if PG_VERSION_NUM >= 190000
#define presence_insert_index_tuples(rri, slot, estate, no_dup_err, conflict, arbiters, only_summarizing) \
	ExecInsertIndexTuples((rri), (estate), \
						  ((no_dup_err) ? EIIT_NO_DUPE_ERROR : 0) | \
						  ((only_summarizing) ? EIIT_ONLY_SUMMARIZING : 0), \
						  (slot), (arbiters), (conflict))
#elif PG_VERSION_NUM >= 160000
#define presence_insert_index_tuples(rri, slot, estate, no_dup_err, conflict, arbiters, only_summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (no_dup_err), \
						  (conflict), (arbiters), (only_summarizing))
#else
#define presence_insert_index_tuples(rri, slot, estate, no_dup_err, conflict, arbiters, only_summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, (no_dup_err), \
						  (conflict), (arbiters))
#endif

/*
 * ExecCheckIndexConstraints(): ON CONFLICT's pre-check of the arbiter
 * indexes (waits for an inserter in progress).
 *
 *   15-17: (resultRelInfo, slot, estate, ItemPointer conflictTid,
 *           List *arbiterIndexes)
 *   18:    (..., ItemPointer conflictTid, ItemPointer tupleid,
 *           List *arbiterIndexes)
 *   19:    (..., ItemPointer conflictTid, const ItemPointerData *tupleid,
 *           List *arbiterIndexes)
 *
 * tupleid = NULL: no row of ours to leave out (an insert).
 */
#if PG_VERSION_NUM >= 180000
#define presence_check_index_constraints(rri, slot, estate, conflict_tid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), NULL, \
							  (arbiters))
#else
#define presence_check_index_constraints(rri, slot, estate, conflict_tid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), \
							  (arbiters))
#endif

/*
 * A GUC check hook's extra, which the GUC machinery frees: malloc'd up to
 * 15, from the GUC memory context (guc_malloc, freed with pfree) from 16.
 * NULL when out of memory (the hook then fails).
 */
#if PG_VERSION_NUM >= 160000
#define presence_guc_malloc(size) guc_malloc(LOG, (size))
#else
#define presence_guc_malloc(size) malloc(size)
#endif

#endif							/* PRESENCE_COMPAT_H */
