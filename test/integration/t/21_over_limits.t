# Rows over the byte limits (issue 19, 9).  The CHECK holds every writer,
# Tep's direct inserts included, to them: a 300-byte topic is refused.  A
# row written before (here: with the CHECK dropped and put back NOT VALID,
# as a 1.0 table can hold) never stops the background worker: the entries
# of a 255-byte topic and of a 300-byte topic beginning with it, both
# expired, are in two topics with two seqs (no key cut at 255 bytes); the
# sweep resets the 255-byte one, leaves the other (its reset would break
# the CHECK) with one WARNING naming it, and prunes it when its worker dies.
use strict;
use warnings;
use Test::More;
use PresenceTest;

presence_node();
my $admin = connect_db();
my $l = PresenceTest::Listener->new;
my $t255 = 'x' x 255;
my $t300 = $t255 . ('y' x 45);
my $now = now_s();

$admin->do(q{CREATE ROLE tep_writer});
$admin->do(q{GRANT SELECT, INSERT, UPDATE, DELETE ON tep_presence, tep_presence_worker TO tep_writer});
$admin->do(q{INSERT INTO tep_presence_worker (worker_id, last_seen_ts, lease, lease_until)
             VALUES ('big-w', ?, '1 hour', now() + interval '1 hour')}, undef, $now);
my $insert = q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts, status_state, status_note, status_until)
               VALUES (?, ?, ?, ?, ?, 'busy', ?, ?)};

# Every writer: a Tep role's direct inserts over a limit are refused.
$admin->do('SET ROLE tep_writer');
for my $bad ([ 'topic of 300 bytes', 'big-w', $t300, 'p', '' ],
	[ 'worker_id of 256 bytes', 'w' x 256, 't', 'p', '' ],
	[ 'principal_id of 256 bytes', 'big-w', 't', 'p' x 256, '' ],
	[ 'note of 1025 bytes', 'big-w', 't', 'p', 'n' x 1025 ]) {
	my ($what, $w, $t, $p, $note) = @$bad;
	ok(!eval { $admin->do($insert, undef, $w, $t, 1, $p, $now, $note, $now + 1); 1 },
		"a direct insert with a $what is refused");
	is($admin->state, '23514', '  by the CHECK (23514)');
}
ok(eval { $admin->do($insert, undef, 'big-w', $t255, 1, 'p', $now, '', $now + 1); 1 },
	'a direct insert with a topic of 255 bytes is accepted');
$admin->do('RESET ROLE');

# A row from before the CHECK had the limits.
$admin->do('ALTER TABLE tep_presence DROP CONSTRAINT tep_presence_entry_check');
$admin->do($insert, undef, 'big-w', $t300, 2, 'p', $now, '', $now + 1);
$admin->do(q{ALTER TABLE tep_presence ADD CONSTRAINT tep_presence_entry_check
             CHECK (presence_entry_is_valid(worker_id, topic, fd, principal_id, kind, agent_id,
                    since_ts, status_state, status_note, status_until, meta)) NOT VALID});
my $pid = wait_worker_pid($admin, 10);

# Both expire: the 255-byte one is reset with its diff; the worker goes on.
my $d = $l->wait_for(sub { my $x = diff_of($_[0]); $x->{kind} eq 'status' && $x->{topic} eq $t255 }, 10);
ok($d && diff_of($d)->{state} eq 'available', 'the 255-byte topic\'s expired status is reset, with its diff');
is(diff_of($d)->{seq}, 1, '  seq 1 of its own topic') if $d;
$l->pause(1);    # five more ticks
is(worker_pid($admin), $pid, 'the background worker keeps running (same process)');
is($admin->selectrow_array(q{SELECT status_state FROM tep_presence WHERE fd = 2}), 'busy',
	'the 300-byte row is left as it is (its reset would break the CHECK)');
ok(eval { $admin->selectrow_array('SELECT presence_sweep_expired_status()'); 1 },
	'presence_sweep_expired_status() passes over it too') or diag($@);
my @warnings = grep { /presence worker WARNING: .*over the byte limits/ } split /\n/, PresenceTest::log_since(0);
is(scalar @warnings, 1, 'one WARNING names it, once, however many ticks');
like($warnings[0] // '', qr/topic "x{64}"\.\.\., 300 bytes; worker_id "big-w"; fd 2/, '  with its topic (cut), size, worker and fd');

# Its worker dies: the prune removes it, with a leave diff under the whole
# topic and a seq of its own.
$admin->do(q{UPDATE tep_presence_worker SET lease_until = now() - interval '1 s' WHERE worker_id = 'big-w'});
my $leave = $l->wait_for(sub { my $x = diff_of($_[0]); $x->{kind} eq 'leave' && $x->{fd} == 2 }, 10);
ok($leave && diff_of($leave)->{topic} eq $t300, 'the dead worker\'s 300-byte row is pruned, its diff carries the whole topic');
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence}), 0, 'both rows are gone');
is_deeply($admin->selectall_arrayref(q{SELECT octet_length(topic), seq FROM presence_topic_seq ORDER BY 1}),
	[ [ 255, 2 ], [ 300, 1 ] ], 'two seq rows, one per topic (255: status, leave; 300: leave)');

server_log_ok(warnings => qr/over the byte limits/);
done_testing;
