# A topic of 100k entries read with a cursor over presence_snapshot_rows,
# 1000 rows a fetch, while a writer changes the topic: the rows are one
# consistent snapshot (the header's seq on every row, exactly the entries
# committed at the DECLARE, in presence_snapshot's order), and the writer's
# diffs carry the seqs that follow it.
use strict;
use warnings;
use Test::More;
use JSON::PP;
use PresenceTest;

presence_node();

my $N = 100_000;
my $admin = connect_db();
$admin->selectrow_array(q{SELECT presence_worker_start('gw-big', '1 hour')});
for (my $k = 0; $k < $N; $k += 25_000) {
	$admin->selectrow_array(q{
		SELECT presence_track_many((SELECT jsonb_agg(jsonb_build_object(
		         'topic', 'room:big', 'fd', i, 'principal_id', 'user:' || i))
		       FROM generate_series(?::int, ?::int) i), 'gw-big')}, undef, $k, $k + 24_999);
}
my $seq0 = $admin->selectrow_array(q{SELECT seq FROM presence_topic_seq WHERE topic = 'room:big'});
is($seq0, $N, "$N joins, seq $N");

my $reader = connect_db();
my $l = PresenceTest::Listener->new;
$reader->begin_work;
$reader->do(q{DECLARE big CURSOR FOR SELECT seq, epoch, entry FROM presence_snapshot_rows('room:big')});

# The writer, after the DECLARE: a leave and a join in the topic.
$admin->selectrow_array(q{SELECT presence_untrack('room:big', 0, 'gw-big')});
$admin->selectrow_array(q{SELECT presence_track('room:big', ?, 'late', worker_id => 'gw-big')}, undef, $N);

my ($rows, $header, $bad_seq, $out_of_order, $fetches) = (0, undef, 0, 0, 0);
my %fds;
my $json = JSON::PP->new;
my $last_key = '';
while (1) {
	my $batch = $reader->selectall_arrayref('FETCH 1000 FROM big');
	last unless @$batch;
	$fetches++;
	for my $row (@$batch) {
		my ($seq, $epoch, $entry) = @$row;
		if (!defined $header) {
			$header = [ $seq, $epoch, $entry ];
			next;
		}
		$rows++;
		$bad_seq++ if $seq != $header->[0];
		my $e = $json->decode($entry);
		$fds{ $e->{fd} }++;
		my $key = sprintf '%020d %s %010d', $e->{since}, $e->{worker_id}, $e->{fd};
		$out_of_order++ if $key lt $last_key;
		$last_key = $key;
	}
}
$reader->commit;
ok($fetches > 100, "read in $fetches fetches");
is($header->[0], $seq0, "the header's seq is the topic's at the DECLARE ($seq0)");
ok(!defined $header->[2], 'the header has no entry');
is($header->[1], $admin->selectrow_array('SELECT presence_epoch()'), 'and the epoch');
is($rows, $N, "$N entry rows");
is(scalar(keys %fds), $N, '  each entry once');
ok(exists $fds{0} && !exists $fds{$N}, '  as committed at the DECLARE (the leave and join after it are not there)');
is($bad_seq, 0, '  every row with the header\'s seq');
is($out_of_order, 0, "  in presence_snapshot's order");

# The writer's diffs follow the snapshot's seq.
my @after = $l->collect(PresenceTest::Listener::match(topic => 'room:big'), 2, 5);
is_deeply([ map { PresenceTest::diff_of($_)->{seq} } @after ], [ $seq0 + 1, $seq0 + 2 ],
	'the diffs after it are seq + 1 and + 2');

server_log_ok();
done_testing();
