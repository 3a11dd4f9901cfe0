/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  One way of waiting (queue.c): a line in ticket order, a sleep on the
 *	  latch, a wake-up by latch.  Used by logins waiting for a login place
 *	  (auth.c) and by statements waiting for an active place (active.c).
 *
 * A queue and its links live in the user's shared memory and are
 * protected by the user's own lock ([owner] below): queue.c takes no lock
 * and calls nothing of its users.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_QUEUE_H
#define RG_QUEUE_H

#include "datatype/timestamp.h"

/* A place in line: one per process, inside the user's per-process record. */
typedef struct RGQueueLink
{
	uint64		ticket;			/* [owner] 0: not in line */
	int32		next;			/* [owner] procnos, -1: none */
	int32		prev;			/* [owner] */
} RGQueueLink;

/* A line of processes in ticket order (the earliest first). */
typedef struct RGQueue
{
	char	   *links;			/* [startup] the first process's link ... */
	Size		stride;			/* [startup] ... and the step to the next */
	uint64		next_ticket;	/* [owner] the last ticket given */
	int32		head;			/* [owner] procno, -1: empty */
	int32		tail;			/* [owner] */
	int32		n;				/* [owner] processes in line */
} RGQueue;

/* How a sleep ended. */
typedef enum RGQueueWake
{
	RG_QUEUE_WOKEN,				/* the latch: look again */
	RG_QUEUE_TIMEOUT,			/* the deadline passed */
	RG_QUEUE_CLIENT_GONE		/* the client's socket closed */
} RGQueueWake;

static inline RGQueueLink *
rg_queue_link(const RGQueue *q, int procno)
{
	return (RGQueueLink *) (q->links + q->stride * procno);
}

extern void rg_queue_init(RGQueue *q, void *first_link, Size stride, int nprocs);
extern uint64 rg_queue_ticket(RGQueue *q);
extern void rg_queue_enter(RGQueue *q, int procno, uint64 ticket);
extern void rg_queue_leave(RGQueue *q, int procno);
extern RGQueueWake rg_queue_sleep(TimestampTz deadline, uint32 wait_event,
								  bool watch_client);
extern void rg_queue_wake(int procno);

/* Is this process in line? */
static inline bool
rg_queue_in(const RGQueue *q, int procno)
{
	return rg_queue_link(q, procno)->ticket != 0;
}

/* Walk the line: the first process, then each one's next; -1 at the end. */
static inline int
rg_queue_first(const RGQueue *q)
{
	return q->head;
}

static inline int
rg_queue_next(const RGQueue *q, int procno)
{
	return rg_queue_link(q, procno)->next;
}

#endif							/* RG_QUEUE_H */
