# A worker with entries in 100k topics is stopped, cleared and restarted,
# each in one call and one transaction, with the default
# max_locks_per_transaction: presence takes no lock per topic (it used to
# take one each, held to commit, and ran out of shared memory past about
# 12,800 topics).  Every topic gets its leave diff, seq 1, 2, 3 in turn.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use PresenceTest;

presence_node();

connect_db()->do(q{CREATE EXTENSION IF NOT EXISTS presence});

my $N = 100_000;
my $admin = connect_db();
my ($locks, $default_locks) = $admin->selectrow_array(
	q{SELECT setting, boot_val FROM pg_settings WHERE name = 'max_locks_per_transaction'});
is($locks, $default_locks, "max_locks_per_transaction is the default ($locks)");

# The worker row is a lease of an hour, so the background worker leaves it.
sub load {
	$admin->begin_work;
	$admin->do(q{SELECT presence_worker_start('big', '1 hour')});
	$admin->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts)
	             SELECT 'big', 'big:' || g, 1, 'user:' || g,
	                    extract(epoch FROM now())::bigint
	               FROM generate_series(1, ?) AS g}, undef, $N);
	$admin->commit;
}

for my $case (['presence_worker_stop', q{SELECT presence_worker_stop('big')}, 1],
	['presence_clear', q{SELECT presence_clear('big')}, 2],
	['presence_worker_start (restart)', q{SELECT presence_worker_start('big', '1 hour') IS NOT NULL}, 3])
{
	my ($what, $sql, $seq) = @$case;
	load();
	my $t = time;
	my $got = eval { $admin->selectrow_array($sql) };
	my $err = $@;
	is($err, '', "$what of $N entries in $N topics: no error");
	diag(sprintf '%s: %s ms', $what, ms(time - $t));
	is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'big'}), 0,
		'  every entry left');
	is($admin->selectrow_array(q{SELECT count(*) FROM presence_topic_seq
	                              WHERE topic LIKE 'big:%' AND seq = ?}, undef, $seq), $N,
		"  every topic's leave is seq $seq");
	is($got, $what =~ /start/ ? 1 : $N, '  the call reports them') unless $what =~ /start/;
}
$admin->do(q{SELECT presence_worker_stop('big')});
$admin->do(q{DELETE FROM presence_topic_seq WHERE topic LIKE 'big:%'});

server_log_ok();
done_testing();
